"""CAP 1.2 messages: valid against the OASIS schema, Alert -> Update -> Cancel with references."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from alerts.cap import (
    CAP_NS,
    CapAlert,
    CapEvent,
    CapStation,
    FeedEntry,
    atom_feed,
    cap_messages,
)

XSD = Path(__file__).resolve().parents[1] / "data" / "CAP-v1.2.xsd"
NS = {"cap": CAP_NS}
T0 = datetime(2026, 11, 30, 6, 5, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def cap_schema():
    return etree.XMLSchema(etree.parse(str(XSD)))


def station():
    return CapStation(id="PKR-LASKAP", name="Pos TMA Pongkeru Laskap", river="Sungai Pongkeru",
                      lat=-2.6175, lon=121.1489,
                      areas=({"kecamatan": "Malili", "desa": "Laskap"}, {"kecamatan": "Malili", "desa": None}))


def chain(kind="water_level", exercise=False):
    alert = CapAlert(id=7, station_id="PKR-LASKAP", kind=kind, level="normal", state="closed", opened_at=T0,
                     exercise=exercise)
    steps = [("raised", "waspada", 2.0), ("escalated", "siaga", 2.6), ("acknowledged", "siaga", None),
             ("escalated", "awas", 3.1), ("reminded", "awas", None), ("deescalated", "siaga", 2.7),
             ("cleared", "normal", 1.8)]
    events = []
    for i, (kind_, level, value) in enumerate(steps):
        at = T0 + timedelta(minutes=10 * i)
        reading = {"metric": kind, "value": value, "ts": at.isoformat()} if value is not None else None
        events.append(CapEvent(id=100 + i, type=kind_, level=level, at=at, recorded_at=at + timedelta(seconds=3),
                               reading=reading))
    return alert, events


def parse(xml: str):
    return etree.fromstring(xml.encode("utf-8"))


def test_every_message_of_a_chain_is_valid_cap_1_2(cap_schema):
    alert, events = chain()
    messages = cap_messages(alert, events, station())
    for message in messages:
        doc = parse(message.xml)
        assert cap_schema.validate(doc), cap_schema.error_log


def test_chain_is_alert_updates_then_cancel_each_referencing_all_earlier():
    alert, events = chain()
    messages = cap_messages(alert, events, station())
    # acknowledged and reminded change nothing public: raised, 2x escalated, deescalated, cleared
    assert [m.msg_type for m in messages] == ["Alert", "Update", "Update", "Update", "Cancel"]
    assert len({m.identifier for m in messages}) == len(messages)
    for i, message in enumerate(messages):
        doc = parse(message.xml)
        refs = doc.findtext("cap:references", namespaces=NS)
        if i == 0:
            assert refs is None
        else:
            assert refs.split(" ") == [m.reference for m in messages[:i]]
            for earlier in messages[:i]:
                sender, identifier, sent = earlier.reference.split(",")
                assert sender == doc.findtext("cap:sender", namespaces=NS)
                assert identifier == earlier.identifier


def test_levels_map_to_urgency_severity_and_both_languages():
    alert, events = chain()
    messages = cap_messages(alert, events, station())
    expected = [("Future", "Moderate"), ("Expected", "Severe"), ("Immediate", "Extreme"),
                ("Expected", "Severe"), ("Past", "Minor")]
    for message, (urgency, severity) in zip(messages, expected):
        doc = parse(message.xml)
        infos = doc.findall("cap:info", NS)
        assert [i.findtext("cap:language", namespaces=NS) for i in infos] == ["id", "en"]
        for info in infos:
            assert info.findtext("cap:urgency", namespaces=NS) == urgency
            assert info.findtext("cap:severity", namespaces=NS) == severity
            assert info.findtext("cap:certainty", namespaces=NS) == "Observed"
            assert info.findtext("cap:expires", namespaces=NS)
            areas = info.findall("cap:area", NS)
            assert [a.findtext("cap:areaDesc", namespaces=NS) for a in areas] == ["Laskap, Malili", "Kec. Malili"]
            assert areas[0].findtext("cap:circle", namespaces=NS) == "-2.617500,121.148900 5"
    last = parse(messages[-1].xml).findall("cap:info", NS)
    assert last[0].findtext("cap:responseType", namespaces=NS) == "AllClear"
    awas = parse(messages[2].xml).findall("cap:info", NS)
    assert "112" in awas[0].findtext("cap:instruction", namespaces=NS)
    assert "WITA" in awas[0].findtext("cap:description", namespaces=NS)
    assert "3.1 m" in awas[1].findtext("cap:description", namespaces=NS)


def test_generation_is_deterministic_and_exercise_is_marked(cap_schema):
    alert, events = chain(kind="rainfall", exercise=True)
    first = cap_messages(alert, events, station())
    again = cap_messages(alert, list(reversed(events)), station())
    assert [m.xml for m in first] == [m.xml for m in again]
    doc = parse(first[0].xml)
    assert doc.findtext("cap:status", namespaces=NS) == "Exercise"
    assert doc.find("cap:info", NS).findtext("cap:category", namespaces=NS) == "Met"
    assert cap_schema.validate(doc), cap_schema.error_log


def test_staff_only_kinds_have_no_cap():
    alert, events = chain()
    offline = CapAlert(id=1, station_id="X", kind="offline", level="waspada", state="active", opened_at=T0)
    with pytest.raises(ValueError):
        cap_messages(offline, events, station())


def test_station_without_coordinates_or_areas_is_still_valid(cap_schema):
    alert, events = chain()
    bare = CapStation(id="X", name="Pos X")
    for message in cap_messages(alert, events, bare):
        assert cap_schema.validate(parse(message.xml)), cap_schema.error_log


def test_atom_feed_links_each_entry_to_its_cap_xml():
    alert, events = chain()
    latest = cap_messages(alert, events[:2], station())[-1]
    xml = atom_feed([FeedEntry(message=latest, url="https://ews.example/cap/alerts/7.xml")],
                    feed_url="https://ews.example/cap/feed.atom", updated=T0)
    doc = etree.fromstring(xml.encode())
    atom = {"a": "http://www.w3.org/2005/Atom"}
    entries = doc.findall("a:entry", atom)
    assert len(entries) == 1
    link = entries[0].find("a:link", atom)
    assert link.get("href") == "https://ews.example/cap/alerts/7.xml"
    assert link.get("type") == "application/cap+xml"
    assert doc.findtext("a:updated", namespaces=atom) == "2026-11-30T06:15:03Z"
