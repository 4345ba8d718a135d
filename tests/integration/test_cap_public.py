"""Public CAP warnings over a real database (spec sections 5 and 15): the stored chain, renewals
before expiry, the feed with Cancels for 24 hours, exercises kept out, polygons and radii."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree

from service import cap
from service.db import schema
from service.db.migrate import upgrade
from tests.support.api import make_harness

XSD = Path(__file__).resolve().parents[1] / "data" / "CAP-v1.2.xsd"
CAP = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
ATOM = {"a": "http://www.w3.org/2005/Atom"}
T0 = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
OID = "2.49.0.1.360.1"
LOCAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")
SQUARE = [[-2.60, 121.10], [-2.60, 121.20], [-2.70, 121.20], [-2.70, 121.10], [-2.60, 121.10]]


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def cap_schema():
    return etree.XMLSchema(etree.parse(str(XSD)))


@pytest.fixture
def api(database_url):
    return make_harness(database_url, clock=Clock(T0), EWS_CAP_EXPIRES_S="60", EWS_CAP_OID=OID)


def issue(api) -> cap.IssueResult:
    return cap.issue_due(api.services.engine, cap.cap_profile(api.services.settings), api.services.clock())


def add_alert(api, station_id, kind, *, exercise=False):
    """Open an alert at the clock's time with a ``raised`` event; return its id."""
    now = api.services.clock()
    with api.services.engine.begin() as conn:
        alert_id = conn.execute(sa.insert(schema.alerts).values(
            station_id=station_id, kind=kind, level="siaga", peak_level="siaga", state="active", opened_at=now,
            exercise=exercise)).inserted_primary_key[0]
    add_event(api, alert_id, "raised", "siaga", 2.6)
    return alert_id


def add_event(api, alert_id, type_, level, value):
    now = api.services.clock()
    with api.services.engine.begin() as conn:
        conn.execute(sa.insert(schema.alert_events).values(
            alert_id=alert_id, type=type_, level=level, at=now - timedelta(seconds=5), recorded_at=now,
            reading={"metric": "water_level", "value": value, "ts": now.isoformat()}))
        if type_ == "cleared":
            conn.execute(sa.update(schema.alerts).where(schema.alerts.c.id == alert_id)
                         .values(state="closed", level="normal", closed_at=now))
        else:
            conn.execute(sa.update(schema.alerts).where(schema.alerts.c.id == alert_id).values(level=level))


def served(api, alert_id):
    response = api.client.get(f"/cap/alerts/{alert_id}.xml")
    assert response.status_code == 200 and response.mimetype == "application/cap+xml", response.data
    return response.data


def chain(api, alert_id):
    with api.services.engine.connect() as conn:
        return conn.execute(sa.select(schema.cap_messages).where(schema.cap_messages.c.alert_id == alert_id)
                            .order_by(schema.cap_messages.c.number)).all()


def feed_links(api):
    response = api.client.get("/cap/feed.atom")
    assert response.status_code == 200 and response.mimetype == "application/atom+xml"
    feed = etree.fromstring(response.data)
    return {e.find("a:link", ATOM).get("href").rsplit("/", 1)[-1]: e.findtext("a:summary", namespaces=ATOM)
            for e in feed.findall("a:entry", ATOM)}


def test_the_chain_is_issued_stored_and_served_unchanged(api, cap_schema):
    alert_id = add_alert(api, "PKR-LASKAP", "water_level")
    assert api.client.get(f"/cap/alerts/{alert_id}.xml").status_code == 404  # nothing issued yet
    assert issue(api).issued == 1
    first = etree.fromstring(served(api, alert_id))
    assert cap_schema.validate(first), cap_schema.error_log
    assert first.findtext("cap:msgType", namespaces=CAP) == "Alert"
    assert LOCAL.match(first.findtext("cap:sent", namespaces=CAP))
    api.services.clock.now += timedelta(seconds=10)
    add_event(api, alert_id, "escalated", "awas", 3.1)
    assert issue(api).issued == 1
    update = served(api, alert_id)
    doc = etree.fromstring(update)
    assert doc.findtext("cap:msgType", namespaces=CAP) == "Update"
    assert first.findtext("cap:identifier", namespaces=CAP) in doc.findtext("cap:references", namespaces=CAP)
    # Published means fixed: renaming the station changes no issued message.
    assert api.call("PATCH", "/api/v1/stations/PKR-LASKAP", json={"name": "Pos Baru"}).status_code == 200
    assert served(api, alert_id) == update
    assert issue(api).issued == 0  # nothing due: a pass is idempotent


def test_a_long_alert_gets_an_update_before_each_expiry(api, cap_schema):
    """EWS_CAP_EXPIRES_S=60: the issuer, run at each renewal time it names, keeps the alert unexpired."""
    alert_id = add_alert(api, "PKR-LASKAP", "water_level")
    result = issue(api)
    for _ in range(12):  # 12 renewals: about 8 minutes of a 60 s validity
        assert result.next_at is not None
        api.services.clock.now = result.next_at
        result = issue(api)
        assert result.issued == 1
    api.services.clock.now += timedelta(seconds=3)
    add_event(api, alert_id, "cleared", "normal", 1.7)
    assert issue(api).issued == 1 and issue(api).next_at is None
    messages = chain(api, alert_id)
    assert [m.msg_type for m in messages] == ["Alert"] + ["Update"] * 12 + ["Cancel"]
    for previous, message in zip(messages, messages[1:]):
        assert message.sent < previous.expires  # never shown as expired while active
        assert previous.expires - message.sent >= timedelta(seconds=15)  # at the latest with a quarter left
    for message in messages:
        doc = etree.fromstring(message.xml.encode())
        assert cap_schema.validate(doc), cap_schema.error_log
        assert message.expires - message.sent == timedelta(seconds=60)
        assert re.fullmatch(re.escape(OID) + r"\.\d{4}(\.\d\d){4}\.\d+", doc.findtext("cap:identifier", namespaces=CAP))
        times = [doc.findtext("cap:sent", namespaces=CAP)] + doc.xpath(
            "cap:info/cap:effective/text() | cap:info/cap:onset/text() | cap:info/cap:expires/text()", namespaces=CAP)
        assert all(LOCAL.match(t) for t in times), times


def test_the_feed_shows_a_cancel_for_24_hours_and_never_an_exercise(api):
    active = add_alert(api, "PKR-LASKAP", "water_level")
    ended = add_alert(api, "ARR-MALILI", "rainfall")
    drill = add_alert(api, "ARR-SOROWAKO", "rainfall", exercise=True)
    staff = add_alert(api, "MLL-MALILI", "offline")
    issue(api)
    assert set(feed_links(api)) == {f"{active}.xml", f"{ended}.xml"}
    api.services.clock.now += timedelta(minutes=5)
    add_event(api, ended, "cleared", "normal", 0.0)
    issue(api)
    links = feed_links(api)
    assert links == {f"{active}.xml": "Update: SIAGA", f"{ended}.xml": "Cancel: NORMAL"}
    assert etree.fromstring(served(api, ended)).findtext("cap:msgType", namespaces=CAP) == "Cancel"
    # The exercise is served at its URL, marked, but never listed; a staff alert has no CAP at all.
    assert etree.fromstring(served(api, drill)).findtext("cap:status", namespaces=CAP) == "Exercise"
    assert api.client.get(f"/cap/alerts/{staff}.xml").status_code == 404
    api.services.clock.now += timedelta(hours=24) - timedelta(seconds=1)
    assert f"{ended}.xml" in feed_links(api)  # still listed just before 24 h
    api.services.clock.now += timedelta(seconds=1)
    issue(api)
    assert set(feed_links(api)) == {f"{active}.xml"}  # the Cancel dropped after 24 h


def test_polygons_and_radius_from_the_station_api_reach_cap(api, cap_schema):
    areas = [{"kecamatan": "Malili", "desa": "Laskap", "polygon": SQUARE}, {"kecamatan": "Malili"}]
    answer = api.call("PATCH", "/api/v1/stations/PKR-LASKAP", json={"areas": areas, "cap_radius_km": 12.5})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["areas"][0]["polygon"] == SQUARE and "polygon" not in body["areas"][1]
    assert body["cap_radius_km"] == 12.5
    alert_id = add_alert(api, "PKR-LASKAP", "water_level")
    issue(api)
    doc = etree.fromstring(served(api, alert_id))
    assert cap_schema.validate(doc), cap_schema.error_log
    first, second = doc.find("cap:info", CAP).findall("cap:area", CAP)
    assert first.findtext("cap:polygon", namespaces=CAP).split()[0] == "-2.600000,121.100000"
    assert second.findtext("cap:circle", namespaces=CAP).endswith(" 12.5")


@pytest.mark.parametrize(("area", "message"), [
    ({"kecamatan": "Malili", "polygon": SQUARE[:4]}, "not closed"),
    ({"kecamatan": "Malili", "polygon": [[0, 0], [0, 1], [1, 0], [1, 1], [0, 0]]}, "crosses itself"),
    ({"kecamatan": "Malili", "polygon": [[0, 0], [0, 1], [0, 0]]}, "at least 4"),
    ({"kecamatan": "Malili", "polygon": [[0, 0, 0], [0, 1], [1, 1], [0, 0]]}, ""),
])
def test_a_bad_polygon_is_a_422_naming_the_field(api, area, message):
    answer = api.call("PATCH", "/api/v1/stations/PKR-LASKAP", json={"areas": [{"kecamatan": "Malili"}, area]})
    assert answer.status_code == 422 and answer.content_type == "application/problem+json"
    errors = answer.get_json()["errors"]
    assert any(e["field"].startswith("areas.1.polygon") and message in e["message"] for e in errors), errors


def test_a_new_station_has_the_default_radius_and_a_bad_radius_is_refused(api):
    station = {"id": "NEW-1", "name": "Pos Baru", "metrics": ["water_level"], "lat": -2.6, "lon": 121.1,
               "areas": [{"kecamatan": "Malili"}]}
    created = api.call("POST", "/api/v1/stations", json=station)
    assert created.status_code == 201 and created.get_json()["cap_radius_km"] == 5
    bad = api.call("PATCH", "/api/v1/stations/NEW-1", json={"cap_radius_km": 0})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "cap_radius_km"


def test_a_database_of_the_previous_head_upgrades_and_its_active_alert_gets_a_chain(tmp_path, cap_schema):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    upgrade(engine, "0002")  # the previous head
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO stations (id, name, lat, lon, metrics, areas, expected_interval_s, plausible, downstream,"
            " rules, created_at, updated_at) VALUES ('OLD-1', 'Pos Lama', -2.6, 121.1, '[\"water_level\"]',"
            " '[{\"kecamatan\": \"Malili\", \"desa\": null}]', 600, '{}', '[]', '{}', :t, :t)"), {"t": T0.replace(tzinfo=None)})
        conn.execute(sa.text("INSERT INTO alerts (id, station_id, kind, level, peak_level, state, opened_at, exercise)"
                             " VALUES (1, 'OLD-1', 'water_level', 'awas', 'awas', 'active', :t, 0)"),
                     {"t": T0.replace(tzinfo=None)})
        conn.execute(sa.text("INSERT INTO alert_events (alert_id, type, level, at, recorded_at, dispatch)"
                             " VALUES (1, 'raised', 'awas', :t, :t, 'done')"), {"t": T0.replace(tzinfo=None)})
    engine.dispose()
    api = make_harness(url, seed=None)
    with api.services.engine.connect() as conn:
        assert conn.execute(sa.select(schema.stations.c.cap_radius_km)).scalar_one() == 5
    assert issue(api).issued == 1
    doc = etree.fromstring(served(api, 1))
    assert cap_schema.validate(doc), cap_schema.error_log
    assert doc.findtext("cap:identifier", namespaces=CAP) == "bpbd-lutim-1-1"
    assert doc.find("cap:info", CAP).find("cap:area", CAP).findtext("cap:circle", namespaces=CAP).endswith(" 5")


def test_cap_paths_that_are_not_an_alert_are_404_problems(api):
    for path in ["/cap/alerts/999999.xml", "/cap/alerts/abc.xml", "/cap/alerts/1", "/cap/alerts/" + "9" * 40 + ".xml"]:
        response = api.client.get(path)
        assert response.status_code == 404 and response.content_type == "application/problem+json", path
