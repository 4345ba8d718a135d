"""CAP 1.2 messages: valid against the OASIS schema, Alert -> Update -> Cancel with references,
local times with their offset, WMO identifiers, polygons and circles."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from alerts.cap import (
    CAP_NS,
    CapAlert,
    CapEvent,
    CapProfile,
    CapStation,
    FeedEntry,
    atom_feed,
    build_message,
    identifier_for,
    reference,
)
from alerts.cap_chain import Issued, due_message

XSD = Path(__file__).resolve().parents[1] / "data" / "CAP-v1.2.xsd"
NS = {"cap": CAP_NS}
T0 = datetime(2026, 11, 30, 6, 5, tzinfo=timezone.utc)
LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")
TIME_FIELDS = ("cap:sent", "cap:info/cap:effective", "cap:info/cap:onset", "cap:info/cap:expires")


@pytest.fixture(scope="module")
def cap_schema():
    return etree.XMLSchema(etree.parse(str(XSD)))


def station(**changes):
    fields = dict(id="PKR-LASKAP", name="Pos TMA Pongkeru Laskap", river="Sungai Pongkeru", lat=-2.6175, lon=121.1489,
                  areas=({"kecamatan": "Malili", "desa": "Laskap"}, {"kecamatan": "Malili", "desa": None}))
    return CapStation(**{**fields, **changes})


def chain_events(kind="water_level"):
    steps = [("raised", "waspada", 2.0), ("escalated", "siaga", 2.6), ("acknowledged", "siaga", None),
             ("escalated", "awas", 3.1), ("reminded", "awas", None), ("deescalated", "siaga", 2.7),
             ("cleared", "normal", 1.8)]
    events = []
    for i, (type_, level, value) in enumerate(steps):
        at = T0 + timedelta(minutes=10 * i)
        reading = {"metric": kind, "value": value, "ts": at.isoformat()} if value is not None else None
        events.append(CapEvent(id=100 + i, type=type_, level=level, at=at, recorded_at=at + timedelta(seconds=3),
                               reading=reading))
    return events


def issue_chain(events, profile=CapProfile(), kind="water_level", exercise=False, the_station=None,
                closed_after=None):
    """Play the issuer: after each event is recorded, issue what is due (as service/cap.py does)."""
    issued, messages = [], []
    for n in range(1, len(events) + 1):
        seen = events[:n]
        state = "closed" if seen[-1].type in ("cleared", "closed") else "active"
        alert = CapAlert(id=7, station_id="PKR-LASKAP", kind=kind, level=seen[-1].level, state=state, opened_at=T0,
                         exercise=exercise)
        due = due_message(alert, seen, issued, seen[-1].recorded_at, profile.expires_s)
        if due is None:
            continue
        seq = 900 + len(issued)
        identifier = identifier_for(profile, alert_id=7, event_id=due.event.id, number=due.number, seq=seq,
                                    sent=due.sent, first_for_event=due.first_for_event)
        message = build_message(alert, due.event, the_station or station(), profile, identifier=identifier,
                                msg_type=due.msg_type, sent=due.sent, expires=due.expires,
                                references=[reference(profile.sender, m.identifier, m.sent, profile.tz)
                                            for m in due.references])
        issued.append(Issued(number=due.number, event_id=due.event.id, msg_type=due.msg_type, identifier=identifier,
                             sent=due.sent, expires=due.expires))
        messages.append(message)
    return messages


def parse(xml: str):
    return etree.fromstring(xml.encode("utf-8"))


def test_every_message_of_a_chain_is_valid_cap_1_2_with_local_times(cap_schema):
    for message in issue_chain(chain_events()):
        doc = parse(message.xml)
        assert cap_schema.validate(doc), cap_schema.error_log
        for path in TIME_FIELDS:
            for value in doc.xpath(path + "/text()", namespaces=NS):
                assert LOCAL_TIME.match(value), (path, value)
        assert doc.findtext("cap:sent", namespaces=NS) == message.sent.astimezone(
            timezone(timedelta(hours=8))).isoformat()


def test_chain_is_alert_updates_then_cancel_each_referencing_the_earlier_ones():
    messages = issue_chain(chain_events())
    # acknowledged and reminded change nothing public: raised, 2x escalated, deescalated, cleared
    assert [m.msg_type for m in messages] == ["Alert", "Update", "Update", "Update", "Cancel"]
    assert len({m.identifier for m in messages}) == len(messages)
    assert messages[0].identifier == "bpbd-lutim-7-100"  # the first release's form, unchanged
    for i, message in enumerate(messages):
        doc = parse(message.xml)
        refs = doc.findtext("cap:references", namespaces=NS)
        if i == 0:
            assert refs is None
            continue
        # every earlier message is still valid here (6 h), so every one is referenced
        assert refs.split(" ") == [m.reference(CapProfile().tz) for m in messages[:i]]
        for earlier in messages[:i]:
            sender, identifier, sent = earlier.reference(CapProfile().tz).split(",")
            assert sender == doc.findtext("cap:sender", namespaces=NS) and sent.endswith("+08:00")


def test_expires_is_sent_plus_the_configured_validity():
    profile = CapProfile(expires_s=3600)
    for message in issue_chain(chain_events(), profile):
        assert message.expires - message.sent == timedelta(hours=1)
        info = parse(message.xml).find("cap:info", NS)
        assert datetime.fromisoformat(info.findtext("cap:expires", namespaces=NS)) == message.expires.replace(microsecond=0)


def test_wmo_identifiers_when_an_oid_is_set():
    profile = CapProfile(oid="2.49.0.1.360.1", sender="bpbd.lutim@example.go.id")
    messages = issue_chain(chain_events(), profile)
    first = messages[0]
    local = first.sent.astimezone(profile.tz)
    assert first.identifier == f"2.49.0.1.360.1.{local:%Y.%m.%d.%H.%M}.900"
    for message in messages:
        assert re.fullmatch(r"2\.49\.0\.1\.360\.1\.\d{4}\.\d\d\.\d\d\.\d\d\.\d\d\.\d+", message.identifier)
        assert parse(message.xml).findtext("cap:sender", namespaces=NS) == "bpbd.lutim@example.go.id"


def test_levels_map_to_urgency_severity_and_both_languages():
    messages = issue_chain(chain_events())
    expected = [("Future", "Moderate"), ("Expected", "Severe"), ("Immediate", "Extreme"),
                ("Expected", "Severe"), ("Past", "Minor")]
    for message, (urgency, severity) in zip(messages, expected):
        infos = parse(message.xml).findall("cap:info", NS)
        assert [i.findtext("cap:language", namespaces=NS) for i in infos] == ["id", "en"]
        for info in infos:
            assert info.findtext("cap:urgency", namespaces=NS) == urgency
            assert info.findtext("cap:severity", namespaces=NS) == severity
            assert info.findtext("cap:certainty", namespaces=NS) == "Observed"
            areas = info.findall("cap:area", NS)
            assert [a.findtext("cap:areaDesc", namespaces=NS) for a in areas] == ["Laskap, Malili", "Kec. Malili"]
            assert areas[0].findtext("cap:circle", namespaces=NS) == "-2.617500,121.148900 5"
    last = parse(messages[-1].xml).findall("cap:info", NS)
    assert last[0].findtext("cap:responseType", namespaces=NS) == "AllClear"
    awas = parse(messages[2].xml).findall("cap:info", NS)
    assert "112" in awas[0].findtext("cap:instruction", namespaces=NS)
    assert "WITA" in awas[0].findtext("cap:description", namespaces=NS)
    assert "3.1 m" in awas[1].findtext("cap:description", namespaces=NS)


def test_a_polygon_replaces_the_circle_and_the_radius_is_the_stations(cap_schema):
    ring = [[-2.60, 121.10], [-2.60, 121.20], [-2.70, 121.20], [-2.70, 121.10], [-2.60, 121.10]]
    shaped = station(cap_radius_km=12.5, areas=({"kecamatan": "Malili", "desa": "Laskap", "polygon": ring},
                                                {"kecamatan": "Malili", "desa": None}))
    message = issue_chain(chain_events()[:1], the_station=shaped)[0]
    doc = parse(message.xml)
    assert cap_schema.validate(doc), cap_schema.error_log
    first, second = doc.find("cap:info", NS).findall("cap:area", NS)
    polygon = first.findtext("cap:polygon", namespaces=NS).split(" ")
    assert polygon[0] == polygon[-1] == "-2.600000,121.100000" and len(polygon) == 5
    assert first.find("cap:circle", NS) is None
    assert second.findtext("cap:circle", namespaces=NS) == "-2.617500,121.148900 12.5"


def test_a_cancel_that_is_not_back_to_normal_does_not_say_all_clear(cap_schema):
    events = chain_events()[:4] + [CapEvent(id=200, type="closed", level="awas", at=T0 + timedelta(hours=2),
                                            recorded_at=T0 + timedelta(hours=2))]
    cancel = issue_chain(events)[-1]
    assert cancel.msg_type == "Cancel"
    doc = parse(cancel.xml)
    assert cap_schema.validate(doc), cap_schema.error_log
    info = doc.find("cap:info", NS)
    assert info.findtext("cap:responseType", namespaces=NS) == "Monitor"
    assert "normal" not in info.findtext("cap:description", namespaces=NS)
    assert "dicabut" in info.findtext("cap:headline", namespaces=NS)


def test_exercise_is_marked_and_rain_is_met(cap_schema):
    doc = parse(issue_chain(chain_events("rainfall"), kind="rainfall", exercise=True)[0].xml)
    assert doc.findtext("cap:status", namespaces=NS) == "Exercise"
    assert doc.find("cap:info", NS).findtext("cap:category", namespaces=NS) == "Met"
    assert cap_schema.validate(doc), cap_schema.error_log


def test_staff_only_kinds_have_no_cap():
    offline = CapAlert(id=1, station_id="X", kind="offline", level="waspada", state="active", opened_at=T0)
    with pytest.raises(ValueError):
        build_message(offline, chain_events()[0], station(), CapProfile(), identifier="x", msg_type="Alert",
                      sent=T0, expires=T0 + timedelta(hours=1))


def test_station_without_coordinates_or_areas_is_still_valid(cap_schema):
    for message in issue_chain(chain_events(), the_station=CapStation(id="X", name="Pos X")):
        assert cap_schema.validate(parse(message.xml)), cap_schema.error_log


def test_atom_feed_links_each_entry_to_its_cap_xml():
    latest = issue_chain(chain_events()[:2])[-1]
    entry = FeedEntry(identifier=latest.identifier, sender=latest.sender, sent=latest.sent, headline=latest.headline,
                      url="https://ews.example/cap/alerts/7.xml")
    doc = etree.fromstring(atom_feed([entry], feed_url="https://ews.example/cap/feed.atom", updated=T0).encode())
    atom = {"a": "http://www.w3.org/2005/Atom"}
    entries = doc.findall("a:entry", atom)
    assert len(entries) == 1
    link = entries[0].find("a:link", atom)
    assert link.get("href") == "https://ews.example/cap/alerts/7.xml"
    assert link.get("type") == "application/cap+xml"
    assert doc.findtext("a:updated", namespaces=atom) == "2026-11-30T06:15:03Z"


def test_an_upstream_alert_is_a_flood_wave_with_onset_at_its_eta(cap_schema):
    eta = T0 + timedelta(hours=3)
    alert = CapAlert(id=9, station_id="KLN-WOTU", kind="upstream", level="siaga", state="active", opened_at=T0)
    reading = {"metric": "water_level", "value": 3.2, "ts": T0.isoformat(), "source_station_id": "KLN-MANGKUTANA",
               "source_name": "Pos TMA Kalaena Mangkutana", "source_place": "Mangkutana", "eta": eta.isoformat()}
    event = CapEvent(id=1, type="raised", level="siaga", at=T0, recorded_at=T0, reading=reading)
    wotu = station(id="KLN-WOTU", name="Pos TMA Kalaena Wotu", river="Sungai Kalaena",
                   areas=({"kecamatan": "Wotu", "desa": "Kalaena"},))
    message = build_message(alert, event, wotu, CapProfile(), identifier="x-1", msg_type="Alert", sent=T0,
                            expires=T0 + timedelta(hours=6))
    doc = etree.fromstring(message.xml.encode())
    cap_schema.assertValid(doc)
    infos = doc.findall("cap:info", NS)
    assert [i.findtext("cap:event", namespaces=NS) for i in infos] == ["Banjir kiriman", "Flood wave from upstream"]
    assert {i.findtext("cap:onset", namespaces=NS) for i in infos} == {"2026-11-30T17:05:00+08:00"}  # the ETA, WITA
    description = infos[0].findtext("cap:description", namespaces=NS)
    assert "Pos TMA Kalaena Mangkutana" in description and "30-11-2026 17:05 WITA" in description
