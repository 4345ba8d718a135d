"""The scenario generator (pure: no broker), pacing, topics and payload packing."""

import json
import math
from datetime import datetime, timedelta, timezone

import pytest

from sensors import topics
from sensors.simulator import (
    Status, anchor, encode_payload, list_scenarios, load_scenario, load_seed_stations, parse_speed,
    rain_intensity, scenario_samples, water_level_thresholds,
)

START = datetime(2026, 11, 29, 0, 0, tzinfo=timezone.utc)
STATIONS = {s["id"]: s for s in load_seed_stations()}


def _run(name, seed=1, **kw):
    return list(scenario_samples(load_scenario(name), START, seed, **kw))


def _samples(emissions):
    for sid, payload, sim_time in emissions:
        for sample in payload if isinstance(payload, list) else [payload]:
            if isinstance(sample, dict):
                yield sid, sample, sim_time


def _peaks(emissions):
    peaks = {}
    for sid, sample, _ in _samples(emissions):
        level = sample["values"].get("water_level")
        if isinstance(level, float) and 0 <= level <= 10:
            peaks[sid] = max(peaks.get(sid, 0.0), level)
    return peaks


def _first_above_normal(emissions):
    """When each station's water level first left normal."""
    firsts = {}
    for sid, sample, t in _samples(emissions):
        level = sample["values"].get("water_level")
        if level is not None and sid not in firsts and _level(sid, level) != "normal":
            firsts[sid] = t
    return firsts


def _level(station_id, value):
    marks = water_level_thresholds(STATIONS[station_id])
    return max([name for name, mark in marks.items() if value >= mark], key=list(marks).index, default="normal")


def test_bundled_scenarios():
    assert {"calm", "pongkeru-2024", "kalaena-flash", "sensor-faults"} <= set(list_scenarios())


@pytest.mark.parametrize("name", ["calm", "pongkeru-2024", "kalaena-flash", "sensor-faults"])
def test_same_seed_same_output_and_send_order(name):
    first, second = _run(name), _run(name)
    assert first == second
    times = [t for _, _, t in first]
    assert times == sorted(times)
    assert times[0] > START and times[-1] <= START + timedelta(hours=load_scenario(name)["duration_h"])


@pytest.mark.parametrize("name", ["calm", "pongkeru-2024", "kalaena-flash", "sensor-faults"])
def test_samples_follow_the_contract(name):
    for sid, payload, sim_time in _run(name):
        assert topics.is_station_id(sid)
        if isinstance(payload, (bytes, Status)):
            continue
        items = payload if isinstance(payload, list) else [payload]
        assert 1 <= len(items) <= topics.MAX_SAMPLES_PER_PAYLOAD
        assert len(encode_payload(payload)) <= topics.MAX_PAYLOAD_BYTES
        for sample in items:
            assert set(sample) == {"ts", "seq", "values"}
            ts = datetime.strptime(sample["ts"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            assert ts <= sim_time  # never stamped after the moment it is sent
            station = STATIONS[sid]
            assert set(sample["values"]) <= set(station["metrics"]), (sid, sample)


def test_pongkeru_2024_floods_laskap_only():
    peaks = _peaks(_run("pongkeru-2024"))
    assert _level("PKR-LASKAP", peaks["PKR-LASKAP"]) == "awas"
    assert _level("MLL-MALILI", peaks["MLL-MALILI"]) == "waspada"  # the wave arrives attenuated
    for sid in ("LAO-HARAPAN", "KLN-MANGKUTANA", "KLN-KALAENA", "KLN-WOTU", "AGK-ANGKONA", "LRN-PARUMPANAI"):
        assert _level(sid, peaks[sid]) == "normal", sid


def test_pongkeru_2024_rain_starts_about_14_wita_and_laskap_follows():
    emissions = _run("pongkeru-2024")
    local_start = datetime.fromisoformat(load_scenario("pongkeru-2024")["local_start"])
    first_tip = first_awas = None
    counters = [(t, s["values"]["rain_tips"]) for sid, s, t in _samples(emissions) if sid == "ARR-PONGKERU"]
    for (_, before), (t, after) in zip(counters, counters[1:]):
        if first_tip is None and after > before:
            first_tip = t
    for sid, sample, t in _samples(emissions):
        if sid == "PKR-LASKAP" and first_awas is None and sample["values"]["water_level"] >= 3.0:
            first_awas = t
    wita = lambda t: local_start + (t - START)  # noqa: E731
    assert 13 <= wita(first_tip).hour <= 14
    assert first_tip < first_awas
    assert 15 <= wita(first_awas).hour <= 18


def test_kalaena_flash_travels_downstream():
    emissions = _run("kalaena-flash")
    firsts = _first_above_normal(emissions)
    assert firsts["KLN-MANGKUTANA"] < firsts["KLN-KALAENA"] < firsts["KLN-WOTU"]
    assert "AGK-ANGKONA" in firsts
    assert not {"PKR-LASKAP", "MLL-MALILI", "LAO-HARAPAN", "LRN-PARUMPANAI"} & set(firsts)


def test_calm_stays_normal_with_small_rain():
    emissions = _run("calm")
    assert all(_level(sid, v) == "normal" for sid, v in _peaks(emissions).items())
    hourly = {}
    for sid, sample, t in _samples(emissions):
        if "rainfall" in sample["values"]:
            hourly[(sid, t.hour)] = hourly.get((sid, t.hour), 0) + sample["values"]["rainfall"]
    assert max(hourly.values()) < 10


def test_tip_counters_are_cumulative_with_one_reset_and_match_the_rain():
    emissions = _run("pongkeru-2024")
    counters = [s["values"]["rain_tips"] for sid, s, _ in _samples(emissions) if sid == "ARR-PONGKERU"]
    drops = [(a, b) for a, b in zip(counters, counters[1:]) if b < a]
    assert len(drops) == 1 and drops[0][1] <= 1  # the logger rebooted after the rain
    mm = sum(b - a if b >= a else b for a, b in zip(counters, counters[1:])) * STATIONS["ARR-PONGKERU"]["mm_per_tip"]
    scenario = load_scenario("pongkeru-2024")
    hours = [i / 600 for i in range(int(scenario["duration_h"] * 600))]
    expected = sum(rain_intensity(scenario["rain"]["pongkeru"], h) for h in hours) / 600
    assert mm == pytest.approx(expected, abs=1.0)


def test_outage_sends_the_backlog_as_one_batch():
    batches = [(sid, p) for sid, p, _ in _run("pongkeru-2024") if isinstance(p, list)]
    assert len(batches) == 1
    sid, batch = batches[0]
    assert sid == "ARR-PONGKERU" and len(batch) >= 2
    seqs = [s["seq"] for s in batch]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_sensor_faults():
    emissions = _run("sensor-faults")
    raw = [p for _, p, _ in emissions if isinstance(p, bytes)]
    assert len(raw) == 6
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw[0])
    future = []
    for payload in raw:
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        if isinstance(body, dict):
            future.append(body)
    end = START + timedelta(hours=12)
    assert any(datetime.fromisoformat(p["ts"].replace("Z", "+00:00")) > end for p in future)
    levels = {sid: [s["values"]["water_level"] for s2, s, _ in _samples(emissions) if s2 == sid]
              for sid in ("KLN-WOTU", "PKR-LASKAP", "AGK-ANGKONA")}
    assert 25.0 in levels["KLN-WOTU"] and -3.2 in levels["PKR-LASKAP"]
    longest_run = max(sum(1 for _ in g) for _, g in __import__("itertools").groupby(levels["AGK-ANGKONA"]))
    assert longest_run >= 20  # stuck for four hours
    statuses = [(sid, p.state) for sid, p, _ in emissions if isinstance(p, Status)]
    assert statuses == [("LAO-HARAPAN", "offline")]
    last_lao = max(t for sid, _, t in _samples(emissions) if sid == "LAO-HARAPAN")
    assert last_lao <= START + timedelta(hours=5)
    volts = [s["values"]["battery"] for sid, s, _ in _samples(emissions) if sid == "LRN-PARUMPANAI"]
    assert min(volts) < 11.5 < volts[0]


def test_only_restricts_the_output_not_the_rivers():
    everything = _peaks(_run("pongkeru-2024"))
    only = _run("pongkeru-2024", only=["MLL-MALILI"])
    assert {sid for sid, _, _ in only} == {"MLL-MALILI"}
    assert _peaks(only)["MLL-MALILI"] == pytest.approx(everything["MLL-MALILI"], abs=0.1)


def test_anchor_never_runs_ahead_of_the_wall_clock():
    now = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
    day = timedelta(days=1)
    assert anchor(day, math.inf, now) == now - day
    start = anchor(day, 1440, now)
    wall_run = timedelta(minutes=1)
    assert start + day == now + wall_run
    for elapsed_s in range(0, 61, 5):  # simulated time at each wall second of the run
        wall = now + timedelta(seconds=elapsed_s)
        assert start + timedelta(seconds=elapsed_s * 1440) <= wall
    assert anchor(day, 1, now) == now


def test_parse_speed():
    assert parse_speed("max") == math.inf
    assert parse_speed("1440") == 1440
    with pytest.raises(Exception):
        parse_speed("0.5")


def test_topics():
    assert topics.readings_topic("ews/v1", "PKR-LASKAP") == "ews/v1/stations/PKR-LASKAP/readings"
    assert topics.status_topic("/ews/v1/", "PKR-LASKAP") == "ews/v1/stations/PKR-LASKAP/status"
    assert topics.parse_readings_topic("ews/v1", "ews/v1/stations/PKR-LASKAP/readings") == "PKR-LASKAP"
    drill = topics.exercise_readings_topic("ews/v1", "PKR-LASKAP")
    assert drill == "ews/v1/exercise/stations/PKR-LASKAP/readings"
    assert topics.parse_exercise_readings_topic("ews/v1", drill) == "PKR-LASKAP"
    assert topics.parse_readings_topic("ews/v1", drill) is None
    assert topics.parse_exercise_readings_topic("ews/v1", "ews/v1/stations/PKR-LASKAP/readings") is None
    for bad in ("ews/v1/stations/PKR-LASKAP/status", "ews/v2/stations/X/readings", "ews/v1/stations//readings",
                "ews/v1/stations/a b/readings", "ews/v1/stations/X/readings/extra", f"ews/v1/stations/{'x' * 65}/readings"):
        assert topics.parse_readings_topic("ews/v1", bad) is None, bad
    with pytest.raises(ValueError):
        topics.readings_topic("ews/v1", "bad/id")


def test_pack_batches_respects_both_limits():
    one = [topics.encode_sample({"ts": "2026-11-30T06:00:00Z", "values": {"water_level": 1.0}})]
    assert list(topics.pack_batches(one)) == [(1, one[0])]
    many = one * 2500
    packed = list(topics.pack_batches(many))
    assert [n for n, _ in packed] == [1000, 1000, 500]
    assert all(len(json.loads(p)) == n for n, p in packed)
    big = [b'{"ts":"2026-11-30T06:00:00Z","values":{"water_level":1.0},"pad":"' + b"x" * 1000 + b'"}'] * 600
    packed = list(topics.pack_batches(big))
    assert sum(n for n, _ in packed) == 600
    assert all(len(p) <= topics.MAX_PAYLOAD_BYTES for _, p in packed)


def test_kalaena_wave_is_sent_from_upstream():
    """Rain on the upper Kalaena only: Mangkutana rises first, Kalaena and Wotu hours later (banjir kiriman)."""
    emissions = _run("kalaena-wave")
    firsts = _first_above_normal(emissions)
    assert set(firsts) == {"KLN-MANGKUTANA", "KLN-KALAENA", "KLN-WOTU"}
    assert firsts["KLN-KALAENA"] - firsts["KLN-MANGKUTANA"] >= timedelta(hours=1)
    assert firsts["KLN-WOTU"] - firsts["KLN-KALAENA"] >= timedelta(hours=1)
    assert _level("KLN-MANGKUTANA", _peaks(emissions)["KLN-MANGKUTANA"]) == "awas"
