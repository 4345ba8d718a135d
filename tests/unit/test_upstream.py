"""The river network and upstream waves (spec section 11): pure functions of alerts.upstream."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.levels import Level
from alerts.upstream import (
    Wave,
    all_clear_allowed,
    arrivals,
    find_cycle,
    follow,
    inhibited,
    network_from_stations,
    network_problems,
    propagate,
    strongest,
)
from config import load_json

T0 = datetime(2026, 11, 30, 6, 5, tzinfo=timezone.utc)
KALAENA = {"KLN-MANGKUTANA": [("KLN-KALAENA", 5400)], "KLN-KALAENA": [("KLN-WOTU", 5400)], "KLN-WOTU": []}


def wave(source: str, level: Level, eta_min: int, at_min: int = 0) -> Wave:
    return Wave(source, level, T0 + timedelta(minutes=at_min), T0 + timedelta(minutes=eta_min))


# --- the shipped registry ------------------------------------------------------------------------

def test_seed_network_is_valid_and_the_kalaena_runs_mangkutana_kalaena_wotu():
    seed = load_json("seed", "luwu-timur.json")["stations"]
    network = network_from_stations(seed)
    assert network_problems(network) == []
    assert arrivals(network, "KLN-MANGKUTANA") == {"KLN-KALAENA": 5400, "KLN-WOTU": 10800}  # +1.5 h, +3 h


def test_kalaena_waves_have_eta_from_the_measurement_time():
    waves = propagate(KALAENA, "KLN-MANGKUTANA", Level.SIAGA, T0, source_alert_id=7)
    assert {k: v.eta for k, v in waves.items()} == {"KLN-KALAENA": T0 + timedelta(hours=1.5),
                                                    "KLN-WOTU": T0 + timedelta(hours=3)}
    assert all(w.level == Level.SIAGA and w.source_station_id == "KLN-MANGKUTANA" and w.source_alert_id == 7
               for w in waves.values())
    assert propagate(KALAENA, "KLN-WOTU", Level.AWAS, T0) == {}  # the river mouth warns nobody


# --- validation ----------------------------------------------------------------------------------

def test_unknown_target_and_cycle_are_named():
    assert network_problems({"A": [("B", 60)]}) == [("A", "downstream.0.station_id", "there is no station 'B'")]
    problems = network_problems({"A": [("B", 60)], "B": [("C", 60)], "C": [("A", 60)]})
    assert len(problems) == 1 and problems[0][1] == "downstream"
    assert "A -> B -> C -> A" in problems[0][2] or "B -> C -> A -> B" in problems[0][2] or "C -> A -> B -> C" in problems[0][2]
    assert network_problems({"A": [("A", 0)]})[0][2] == "a station cannot flow into itself"
    assert network_problems({"A": [("B", 60)]}, known=["A", "B"]) == []


def test_arrivals_terminate_even_on_a_cyclic_network():
    # A refused network never reaches the engine, but a hand-edited database must not hang ingest.
    assert arrivals({"A": [("B", 60)], "B": [("A", 60)]}, "A") == {"B": 60}


# --- property tests --------------------------------------------------------------------------------

@st.composite
def dags(draw):
    """A random DAG: links only from a lower to a higher index, so it never loops."""
    n = draw(st.integers(min_value=1, max_value=9))
    names = [f"S{i}" for i in range(n)]
    network = {name: [] for name in names}
    for i in range(n):
        for j in range(i + 1, n):
            if draw(st.booleans()):
                network[names[i]].append((names[j], draw(st.integers(min_value=0, max_value=6 * 3600))))
    order = draw(st.permutations(names))  # the registry order says nothing about the river's order
    return {name: network[name] for name in order}


@st.composite
def chains(draw):
    """A single river: S0 -> S1 -> ... with random travel times."""
    times = draw(st.lists(st.integers(min_value=0, max_value=86400), min_size=1, max_size=8))
    network = {f"S{i}": [(f"S{i + 1}", t)] for i, t in enumerate(times)}
    network[f"S{len(times)}"] = []
    return network, times


def _paths(network, source):
    """Every path's summed travel time to each station (brute force)."""
    sums: dict[str, list[int]] = {}
    stack = [(source, 0)]
    while stack:
        station, elapsed = stack.pop()
        for target, travel in network[station]:
            sums.setdefault(target, []).append(elapsed + travel)
            stack.append((target, elapsed + travel))
    return sums


@given(chains())
def test_eta_is_the_sum_along_the_path(chain):
    network, times = chain
    waves = propagate(network, "S0", Level.SIAGA, T0)
    for i in range(1, len(times) + 1):
        assert waves[f"S{i}"].eta == T0 + timedelta(seconds=sum(times[:i]))


@given(dags(), st.data())
@settings(max_examples=200)
def test_random_dags_never_loop_and_no_station_is_warned_twice(network, data):
    assert find_cycle(network) is None and network_problems(network) == []
    source = data.draw(st.sampled_from(sorted(network)))
    waves = propagate(network, source, Level.AWAS, T0)
    reachable = _paths(network, source)
    # One wave per station reached (a dict: never two), never the source itself...
    assert set(waves) == set(reachable) and source not in waves
    # ...at the sum along a path: the quickest one, the wave people must be ready for first.
    for station, w in waves.items():
        assert w.eta == T0 + timedelta(seconds=min(reachable[station]))


@given(dags(), st.data())
def test_adding_a_link_back_upstream_is_a_cycle(network, data):
    reach = {s: _paths(network, s) for s in network}
    pairs = [(a, b) for a in network for b in reach[a]]
    if not pairs:
        return
    a, b = data.draw(st.sampled_from(pairs))
    looped = {**network, b: list(network[b]) + [(a, 60)]}
    cycle = find_cycle(looped)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert all((cycle[i + 1] in [t for t, _ in looped[cycle[i]]]) for i in range(len(cycle) - 1))
    assert [p[1] for p in network_problems(looped)] == ["downstream"]


# --- one station's upstream alert ------------------------------------------------------------------

def test_two_sources_highest_level_then_earliest_eta():
    kalaena = wave("KLN-KALAENA", Level.SIAGA, 90)
    mangkutana = wave("KLN-MANGKUTANA", Level.SIAGA, 180)
    first = follow({}, "KLN-MANGKUTANA", mangkutana)
    assert first.type == "raised" and first.wave == mangkutana
    second = follow(first.waves, "KLN-KALAENA", kalaena)
    assert second.type is None and second.changed and second.wave == kalaena  # same level, earlier ETA
    awas = wave("KLN-MANGKUTANA", Level.AWAS, 200, at_min=20)
    third = follow(second.waves, "KLN-MANGKUTANA", awas)
    assert third.type == "escalated" and third.wave == awas  # the highest level wins over the earlier ETA
    fourth = follow(third.waves, "KLN-MANGKUTANA", None)
    assert fourth.type == "deescalated" and fourth.wave == kalaena  # one source left
    last = follow(fourth.waves, "KLN-KALAENA", None)
    assert last.type == "cleared" and last.wave is None and last.waves == {}


def test_a_source_wave_is_replaced_only_by_a_higher_level():
    awas = wave("A", Level.AWAS, 60)
    held = follow({}, "A", awas)
    again = follow(held.waves, "A", wave("A", Level.SIAGA, 90, at_min=30))
    assert again.type is None and not again.changed and again.wave == awas
    assert not follow({}, "A", None).changed  # a source we never heard of closing changes nothing


@given(st.lists(st.tuples(st.sampled_from("ABCD"), st.sampled_from(list(Level)[1:]), st.integers(0, 600),
                          st.booleans()), max_size=20))
def test_follow_stands_on_the_strongest_open_source(steps):
    waves: dict = {}
    level = Level.NORMAL
    for source, lvl, eta, closes in steps:
        change = follow(waves, source, None if closes else wave(source, lvl, eta))
        waves = change.waves
        best = strongest(waves.values())
        assert change.wave == best
        new_level = best.level if best else Level.NORMAL
        assert (change.type is None) == (new_level == level)
        assert (change.type == "cleared") == (level != Level.NORMAL and not waves)
        level = new_level
        if best is not None:
            top = [w for w in waves.values() if w.level == best.level]
            assert best.eta == min(w.eta for w in top) and best.level == max(w.level for w in waves.values())


def test_wave_round_trips_as_json():
    w = Wave("KLN-MANGKUTANA", Level.SIAGA, T0, T0 + timedelta(hours=3), 12, {"metric": "water_level", "value": 3.2})
    assert Wave.from_doc(w.to_doc()) == w


def test_inhibition_and_all_clear():
    assert inhibited(Level.SIAGA, Level.SIAGA) and inhibited(Level.SIAGA, Level.AWAS)
    assert not inhibited(Level.AWAS, Level.SIAGA) and not inhibited(Level.WASPADA, Level.NORMAL)
    assert all_clear_allowed(own_active=False) and not all_clear_allowed(own_active=True)
