"""Upstream alerts on a real database (spec section 11), driven through the real ingest path.

The seed's Kalaena: KLN-MANGKUTANA (siaga 3.0, awas 3.8) -> 1.5 h -> KLN-KALAENA (siaga 3.2,
awas 4.0) -> 1.5 h -> KLN-WOTU (siaga 3.5, awas 4.2).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from alerts.levels import Level
from service import alerting
from service.db.schema import alert_events, alerts
from tests.support.ingest import iso, send_at

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
T0 = NOW - timedelta(days=1)


def send(services, minute: float, station: str, level: float) -> list[dict]:
    return send_at(services, station, T0 + timedelta(minutes=minute), {"water_level": level}, timedelta(minutes=1))


def upstream(services, station: str):
    with services.engine.connect() as conn:
        return conn.execute(sa.select(alerts).where(alerts.c.station_id == station, alerts.c.kind == "upstream")
                            .order_by(alerts.c.id)).all()


def events_of(services, alert_id: int) -> list[tuple[str, str, str]]:
    with services.engine.connect() as conn:
        rows = conn.execute(sa.select(alert_events).where(alert_events.c.alert_id == alert_id)
                            .order_by(alert_events.c.id)).all()
    return [(r.type, r.level, r.dispatch) for r in rows]


def test_a_rise_at_mangkutana_warns_kalaena_and_wotu_with_their_etas_and_follows_its_source(services):
    send(services, 0, "KLN-MANGKUTANA", 2.0)
    assert send(services, 10, "KLN-MANGKUTANA", 2.5)  # waspada: below upstream_from (siaga), nobody downstream
    assert upstream(services, "KLN-KALAENA") == []
    events = send(services, 20, "KLN-MANGKUTANA", 3.1)  # siaga
    measured = T0 + timedelta(minutes=20)
    assert sorted((e["station_id"], e["kind"], e["type"]) for e in events if e["kind"] == "upstream") == [
        ("KLN-KALAENA", "upstream", "raised"), ("KLN-WOTU", "upstream", "raised")]
    (kalaena,), (wotu,) = upstream(services, "KLN-KALAENA"), upstream(services, "KLN-WOTU")
    assert kalaena.eta == measured + timedelta(hours=1.5) and wotu.eta == measured + timedelta(hours=3)
    assert kalaena.level == wotu.level == "siaga" and kalaena.source_station_id == "KLN-MANGKUTANA"
    assert events_of(services, wotu.id) == [("raised", "siaga", "pending")]
    with services.engine.connect() as conn:
        detail = alerting.get_alert(conn, wotu.id)
    assert detail["source_station_id"] == "KLN-MANGKUTANA" and detail["eta"] == iso(measured + timedelta(hours=3))
    reading = detail["events"][0]["reading"]
    assert reading["value"] == 3.1 and reading["source_place"] == "Mangkutana" and reading["eta"] == detail["eta"]

    send(services, 30, "KLN-MANGKUTANA", 3.9)  # awas: they escalate with it, ETA from the new measurement
    (wotu,) = upstream(services, "KLN-WOTU")
    assert wotu.level == "awas" and wotu.eta == T0 + timedelta(minutes=30, hours=3)
    assert events_of(services, wotu.id)[-1] == ("escalated", "awas", "pending")
    send(services, 40, "KLN-MANGKUTANA", 3.5)  # the gauge falls: the water already on its way still comes
    assert upstream(services, "KLN-WOTU")[0].level == "awas"

    for minute in range(50, 80, 10):  # back to normal for clear_hold_s (600 s): the source closes, so do they
        send(services, minute, "KLN-MANGKUTANA", 1.0)
    for station in ("KLN-KALAENA", "KLN-WOTU"):
        (row,) = upstream(services, station)
        assert row.state == "closed"
        assert events_of(services, row.id)[-1] == ("cleared", "normal", "pending")  # the all-clear


def test_two_sources_one_alert_highest_level_earliest_eta_closing_with_the_last(services):
    send(services, 0, "KLN-MANGKUTANA", 3.1)  # siaga: Wotu expects it at +3 h
    send(services, 10, "KLN-KALAENA", 3.3)  # Kalaena's own siaga: at Wotu at +10 min + 1.5 h, earlier
    (wotu,) = upstream(services, "KLN-WOTU")
    assert wotu.level == "siaga" and wotu.source_station_id == "KLN-KALAENA"
    assert wotu.eta == T0 + timedelta(minutes=100)
    assert [e[0] for e in events_of(services, wotu.id)] == ["raised"]  # one alert, one warning
    send(services, 20, "KLN-MANGKUTANA", 3.9)  # awas upstream: the highest level wins over the earlier ETA
    (wotu,) = upstream(services, "KLN-WOTU")
    assert wotu.level == "awas" and wotu.source_station_id == "KLN-MANGKUTANA"
    for minute in range(30, 60, 10):
        send(services, minute, "KLN-MANGKUTANA", 1.0)  # Mangkutana closes; Kalaena still holds Wotu's alert
    (wotu,) = upstream(services, "KLN-WOTU")
    assert wotu.state == "active" and wotu.level == "siaga" and wotu.source_station_id == "KLN-KALAENA"
    assert events_of(services, wotu.id)[-1] == ("deescalated", "siaga", "none")
    for minute in range(60, 90, 10):
        send(services, minute, "KLN-KALAENA", 1.0)
    assert upstream(services, "KLN-WOTU")[0].state == "closed"


def test_wotus_own_awas_inhibits_its_upstream_messages_and_its_all_clear(services):
    send(services, 0, "KLN-WOTU", 4.3)  # Wotu's own AWAS
    send(services, 10, "KLN-MANGKUTANA", 3.9)  # awas upstream
    (wotu,) = upstream(services, "KLN-WOTU")
    assert events_of(services, wotu.id) == [("raised", "awas", "none")]  # recorded, not sent
    (kalaena,) = upstream(services, "KLN-KALAENA")
    assert events_of(services, kalaena.id) == [("raised", "awas", "pending")]
    for minute in range(20, 50, 10):
        send(services, minute, "KLN-MANGKUTANA", 1.0)
    assert events_of(services, wotu.id)[-1] == ("cleared", "normal", "none")  # Wotu's own alert is still active
    assert events_of(services, kalaena.id)[-1] == ("cleared", "normal", "pending")


def test_closing_the_source_by_hand_closes_its_upstream_alerts_the_same_way(services):
    from service import upstream as upstream_alerts

    send(services, 0, "KLN-MANGKUTANA", 3.1)
    with services.engine.connect() as conn:
        source = conn.execute(sa.select(alerts.c.id).where(alerts.c.station_id == "KLN-MANGKUTANA",
                                                           alerts.c.kind == "water_level")).scalar_one()
    with services.engine.begin() as conn:  # what POST /alerts/{id}/close does for a source alert
        upstream_alerts.source_closed(conn, "KLN-MANGKUTANA", source, NOW, by="operator#1", note="sensor rusak",
                                      all_clear=False)
    for station in ("KLN-KALAENA", "KLN-WOTU"):
        (row,) = upstream(services, station)
        assert row.state == "closed" and events_of(services, row.id)[-1] == ("closed", "normal", "none")
        with services.engine.connect() as conn:
            last = alerting.get_alert(conn, row.id)["events"][-1]
        assert last["reading"]["all_clear"] is False and last["reading"]["source_station_id"] == "KLN-MANGKUTANA"
    # A new wave, closed by hand with the all-clear asked for: it is sent.
    send(services, 10, "KLN-KALAENA", 3.3)
    (wotu,) = [r for r in upstream(services, "KLN-WOTU") if r.state == "active"]
    with services.engine.connect() as conn:
        kalaena = conn.execute(sa.select(alerts.c.id).where(alerts.c.station_id == "KLN-KALAENA",
                                                            alerts.c.kind == "water_level")).scalar_one()
    with services.engine.begin() as conn:
        upstream_alerts.source_closed(conn, "KLN-KALAENA", kalaena, NOW, by="operator#1", note="selesai",
                                      all_clear=True)
    assert events_of(services, wotu.id)[-1] == ("closed", "normal", "pending")


def test_two_instances_opening_one_stations_upstream_alert_at_once_make_one(services):
    """Two sources judged in two transactions at the same time (two ingest instances): one upstream alert."""
    import threading

    from alerts.rules import parse_rules
    from service import upstream as upstream_alerts

    if services.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: only PostgreSQL runs two at once")
    rules = parse_rules({"water_level": {"waspada": 2.5, "siaga": 3.2, "awas": 4.0}})
    first = services.engine.connect()
    tx = first.begin()
    upstream_alerts.source_event(first, "KLN-MANGKUTANA", rules, 1, "raised", Level.SIAGA, T0, {"value": 3.1}, NOW)
    done = []

    def second():
        with services.engine.begin() as conn:  # waits on the first one's new row, then follows it
            done.extend(upstream_alerts.source_event(conn, "KLN-KALAENA", rules, 2, "raised", Level.AWAS,
                                                     T0 + timedelta(minutes=5), {"value": 4.1}, NOW))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.0)
    tx.commit()
    first.close()
    thread.join(30)
    (wotu,) = upstream(services, "KLN-WOTU")
    assert wotu.level == "awas" and set(wotu.sources) == {"KLN-MANGKUTANA", "KLN-KALAENA"}
    assert [e[0] for e in events_of(services, wotu.id)] == ["raised", "escalated"] and len(done) == 1
