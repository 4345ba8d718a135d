"""The rainfall-runoff model: mass balance, rating curve, routing delays, loss store."""

import math

import pytest

from sensors.runoff import Catchment, Link, RatingCurve, RiverNetwork, load_network
from sensors.simulator import load_catchments, load_seed_stations


def _catchment(sid="A", cell="c", **kw):
    params = dict(area_km2=100.0, runoff_coeff=0.5, k_s=3600.0, base_m3s=10.0,
                  rating=RatingCurve(0.2, 0.15, 0.5), initial_loss_mm=0.0)
    params.update(kw)
    return Catchment(station_id=sid, cell=cell, **params)


def test_rating_curve_through_two_points_and_inverse():
    curve = RatingCurve.through(0.3, (12, 0.8), (700, 3.4))
    assert curve.stage(12) == pytest.approx(0.8)
    assert curve.stage(700) == pytest.approx(3.4)
    assert curve.discharge(curve.stage(250)) == pytest.approx(250)
    assert curve.discharge(0.1) == 0.0


def test_dry_catchment_stays_at_base_flow():
    net = RiverNetwork([_catchment()], [], dt_s=60)
    for _ in range(600):
        net.step({})
    assert net.discharge("A") == pytest.approx(10.0)
    assert net.stage("A") == pytest.approx(0.2 + 0.15 * math.sqrt(10))


def test_volume_out_equals_effective_rain_volume():
    """All effective rain leaves the reservoir eventually: nothing made, nothing lost."""
    net = RiverNetwork([_catchment()], [], dt_s=60)
    out_m3 = 0.0
    for step in range(60 * 48):
        net.step({"c": 1.0 if step < 60 else 0.0})  # 60 mm in the first hour
        out_m3 += net.quick_flow("A") * 60
    expected = 60 / 1000 * 100e6 * 0.5
    assert out_m3 == pytest.approx(expected, rel=0.02)


def test_initial_loss_swallows_a_light_shower():
    net = RiverNetwork([_catchment(initial_loss_mm=8.0)], [], dt_s=60)
    for _ in range(60):
        net.step({"c": 5 / 60})  # 5 mm in an hour
    assert net.quick_flow("A") == 0.0
    for _ in range(60):
        net.step({"c": 10 / 60})  # 10 more: 7 of them run off
    assert net.quick_flow("A") > 0.0


def test_routing_delays_the_flood_wave_by_the_travel_time():
    up = _catchment("UP", "wet")
    down = _catchment("DOWN", "dry")
    net = RiverNetwork([down, up], [Link("UP", "DOWN", 7200)], dt_s=60)
    first_rise = {}
    for step in range(60 * 12):
        net.step({"wet": 1.0 if step < 30 else 0.0})
        for sid in ("UP", "DOWN"):
            if sid not in first_rise and net.quick_flow(sid) > 1e-6:
                first_rise[sid] = step
    assert first_rise["UP"] == 0
    assert first_rise["DOWN"] == pytest.approx(120, abs=1)


def test_rain_lag_delays_inflow():
    net = RiverNetwork([_catchment(lag_s=3600)], [], dt_s=60)
    for _ in range(59):
        net.step({"c": 1.0})
    assert net.quick_flow("A") == 0.0
    net.step({"c": 1.0})
    net.step({"c": 1.0})
    assert net.quick_flow("A") > 0.0


def test_a_loop_in_the_network_is_refused():
    with pytest.raises(ValueError):
        RiverNetwork([_catchment("A"), _catchment("B")], [Link("A", "B", 60), Link("B", "A", 60)], dt_s=60)


def test_seed_network_links_and_lags():
    net = load_network(load_seed_stations(), load_catchments(), dt_s=60)
    links = {(lk.upstream, lk.downstream): lk.travel_s for lk in net.links}
    assert links[("PKR-LASKAP", "MLL-MALILI")] == 7200
    assert links[("KLN-MANGKUTANA", "KLN-KALAENA")] == 5400
    assert links[("KLN-KALAENA", "KLN-WOTU")] == 5400
    # rain gauges' downstream travel times become the catchments' rain lag
    assert net.catchments["PKR-LASKAP"].lag_s == 3600
    assert net.catchments["KLN-MANGKUTANA"].lag_s == 3600
    assert net.order.index("KLN-MANGKUTANA") < net.order.index("KLN-KALAENA") < net.order.index("KLN-WOTU")


def test_every_seed_river_sits_below_waspada_on_a_dry_day():
    from sensors.simulator import water_level_thresholds

    net = load_network(load_seed_stations(), load_catchments(), dt_s=60)
    for station in load_seed_stations():
        if station["id"] in net.catchments:
            assert net.stage(station["id"]) < water_level_thresholds(station)["waspada"] - 0.5
