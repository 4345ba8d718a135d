"""The geometry of the report's chart (alerts/chart.py): scales, ticks in WITA, thinning, gaps, event marks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from alerts import chart
from alerts.report import Point

WITA = ZoneInfo("Asia/Makassar")
T0 = datetime(2026, 11, 30, 5, 7, 13, tzinfo=timezone.utc)  # 13:07:13 WITA


def series(values, step_s=600, start=T0):
    return [Point(start + timedelta(seconds=i * step_s), v) for i, v in enumerate(values)]


def coordinates(line: str) -> list[tuple[float, float]]:
    return [tuple(float(c) for c in pair.split(",")) for pair in line.split()]


def test_thresholds_and_values_fit_the_value_axis_on_round_ticks():
    points = series([1.06, 1.5, 2.2, 3.18, 2.5])
    c = chart.build_chart(points, T0, T0 + timedelta(hours=1), {"waspada": 1.8, "siaga": 2.4, "awas": 3.0}, [], WITA)
    assert c.y_min <= 1.06 and c.y_max >= 3.18
    labels = [t.label for t in c.y_ticks]
    assert labels == ["0.5", "1.0", "1.5", "2.0", "2.5", "3.0", "3.5"]
    ys = {th.level: th.y for th in c.thresholds}
    assert c.box.top <= ys["awas"] < ys["siaga"] < ys["waspada"] <= c.box.bottom  # higher value, higher on the page
    assert [th.value for th in c.thresholds] == [1.8, 2.4, 3.0]


def test_time_ticks_fall_on_round_wita_times():
    c = chart.build_chart(series([1, 2, 3]), T0, T0 + timedelta(hours=3), {}, [], WITA)
    assert [t.label for t in c.x_ticks] == ["13:30", "14:00", "14:30", "15:00", "15:30", "16:00"]
    short = chart.build_chart(series([1, 2], 2), T0, T0 + timedelta(seconds=100), {}, [], WITA)
    assert short.x_ticks[0].label == "13:07:15" and all(t.label.count(":") == 2 for t in short.x_ticks)


def test_a_multi_day_axis_shows_the_date_at_local_midnight():
    start = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)  # 18:00 WITA
    c = chart.build_chart([], start, start + timedelta(hours=30), {}, [], WITA)
    assert "30/11" in [t.label for t in c.x_ticks]


@given(st.lists(st.floats(-5, 50, allow_nan=False), min_size=1, max_size=400),
       st.dictionaries(st.sampled_from(["waspada", "siaga", "awas"]), st.floats(0, 40), max_size=3))
def test_everything_drawn_stays_inside_the_plot(values, thresholds):
    points = series(values, 60)
    c = chart.build_chart(points, T0, points[-1].ts + timedelta(seconds=1), thresholds, [(T0, "raised", "waspada")],
                          WITA, width=300, height=150)
    for line in c.lines:
        for x, y in coordinates(line):
            assert c.box.left - 0.1 <= x <= c.box.right + 0.1
            assert c.box.top - 0.1 <= y <= c.box.bottom + 0.1
    for th in c.thresholds:
        assert c.box.top - 0.1 <= th.y <= c.box.bottom + 0.1


def test_a_long_series_is_thinned_without_losing_its_peak():
    values = [1.0 + (i % 97) / 1000 for i in range(20000)]
    values[12345] = 4.2
    points = series(values, 2)
    thinned = chart.thin(points, 300, points[0].ts, points[-1].ts)
    assert len(thinned) <= 600
    assert max(p.value for p in thinned) == 4.2 and min(p.value for p in thinned) == 1.0
    assert thinned == sorted(thinned, key=lambda p: p.ts)


def test_a_silence_breaks_the_line():
    points = series([1.0, 1.1, 1.2]) + series([2.0, 2.1], start=T0 + timedelta(hours=5))
    assert [len(run) for run in chart.runs(points)] == [3, 2]
    c = chart.build_chart(points, T0, T0 + timedelta(hours=6), {}, [], WITA)
    assert len(c.lines) == 2
    lone = series([1.0, 1.1]) + series([3.0], start=T0 + timedelta(hours=5))
    assert len(chart.build_chart(lone, T0, T0 + timedelta(hours=6), {}, [], WITA).dots) == 1


def test_events_are_numbered_as_in_the_timeline_and_close_ones_take_another_row():
    events = [(T0, "raised", "waspada"), (T0 + timedelta(seconds=30), "escalated", "siaga"),
              (T0 + timedelta(hours=2), "escalated", "awas"), (T0 - timedelta(hours=1), "acknowledged", "awas")]
    c = chart.build_chart(series([1, 2, 3]), T0, T0 + timedelta(hours=3), {}, events, WITA)
    assert [(m.number, m.type, m.row) for m in c.events] == [(1, "raised", 0), (2, "escalated", 1), (3, "escalated", 0)]
    assert c.events[0].x < c.events[1].x < c.events[2].x


def test_the_peak_is_marked_where_the_highest_value_is():
    c = chart.build_chart(series([1.0, 3.0, 2.0]), T0, T0 + timedelta(minutes=20), {}, [], WITA)
    expected_y = c.box.bottom - (3.0 - c.y_min) / (c.y_max - c.y_min) * c.box.height
    assert c.peak == (round(c.box.left + c.box.width / 2, 1), round(expected_y, 1))


def test_rolling_sums_add_rain_over_the_window():
    rain = series([1.0, 2.0, 3.0, 4.0], 1800)  # every half hour
    sums = chart.rolling_sums(rain, 3600)
    assert [p.value for p in sums] == [1.0, 3.0, 5.0, 7.0]


def test_rainfall_charts_start_at_zero():
    c = chart.build_chart(series([5.0, 8.0]), T0, T0 + timedelta(hours=1), {"waspada": 10}, [], WITA, floor_zero=True)
    assert c.y_min == 0 and float(c.y_ticks[0].label) == 0
