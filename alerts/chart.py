"""The geometry of an event report's chart: values over the episode against the thresholds.

Pure: it turns points, thresholds and events into SVG coordinates and tick labels; the
page template only draws them. Time ticks fall on round local times (WITA), the value
axis on round numbers; a long series is thinned to the minimum and maximum per pixel
column, so a peak is never lost; a silence in the data breaks the line instead of
drawing a straight line across it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo

from alerts.report import Point

# Candidate time steps (s) for the axis; the first giving at most MAX_X_TICKS ticks wins.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
              172800, 604800)
MAX_X_TICKS = 8
Y_TICKS = 5
GAP_FACTOR = 4  # a pause longer than this many typical sample intervals breaks the line


@dataclasses.dataclass(frozen=True, slots=True)
class Box:
    """The plot area inside the SVG (pixels)."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    pos: float
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class ThresholdLine:
    level: str
    value: float
    y: float


@dataclasses.dataclass(frozen=True, slots=True)
class EventMark:
    """An event drawn as a vertical line with its number (as in the timeline) in one of a few label rows."""

    number: int
    x: float
    type: str
    level: str
    row: int


@dataclasses.dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    box: Box
    lines: tuple[str, ...]  # SVG ``points`` of each unbroken run of the series
    dots: tuple[tuple[float, float], ...]  # runs of one point (nothing to join)
    thresholds: tuple[ThresholdLine, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    events: tuple[EventMark, ...]
    peak: tuple[float, float] | None
    y_min: float
    y_max: float


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about ``count`` intervals over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def value_range(values: Sequence[float], marks: Sequence[float], floor_zero: bool) -> tuple[float, float, float]:
    """The value axis (low, high, tick step): every value and threshold inside, padded, on round numbers."""
    every = list(values) + list(marks)
    low, high = (min(every), max(every)) if every else (0.0, 1.0)
    if floor_zero:
        low = min(0.0, low)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.08
    step = nice_step(high - low + 2 * pad, Y_TICKS)
    bottom = low if floor_zero and low == 0 else low - pad
    return math.floor(bottom / step + 1e-9) * step, math.ceil((high + pad) / step - 1e-9) * step, step


def _label(value: float, step: float) -> str:
    """``value`` with as many decimals as ``step`` needs (0.25 -> 2, 0.5 -> 1, 5 -> 0)."""
    decimals = next((d for d in range(5) if abs(round(step * 10 ** d) - step * 10 ** d) < 1e-6), 4)
    return f"{value:.{decimals}f}"


def y_ticks(low: float, high: float, step: float, scale) -> tuple[Tick, ...]:
    """Value ticks every ``step`` from ``low`` to ``high``."""
    count = int(round((high - low) / step))
    return tuple(Tick(scale(low + i * step), _label(low + i * step, step)) for i in range(count + 1))


def time_step(span_s: float) -> int:
    """The smallest round step giving at most ``MAX_X_TICKS`` ticks over ``span_s`` seconds."""
    return next((s for s in TIME_STEPS if span_s / s <= MAX_X_TICKS), TIME_STEPS[-1])


def x_ticks(start: datetime, end: datetime, zone: tzinfo, scale) -> tuple[Tick, ...]:
    """Ticks on round local times; a tick at local midnight (or the first, on a multi-day axis) shows the date."""
    span = (end - start).total_seconds()
    step = time_step(span)
    offset = start.astimezone(zone).utcoffset().total_seconds()
    first = math.ceil((start.timestamp() + offset) / step) * step - offset
    fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    ticks, t = [], first
    days = span > 86400 or start.astimezone(zone).date() != end.astimezone(zone).date()
    while t <= end.timestamp() + 1e-6:
        local = datetime.fromtimestamp(t, zone)
        midnight = local.hour == 0 and local.minute == 0 and local.second == 0
        label = local.strftime("%d/%m") if midnight or (days and step >= 86400) else local.strftime(fmt)
        ticks.append(Tick(scale(datetime.fromtimestamp(t, start.tzinfo)), label))
        t += step
    return tuple(ticks)


def thin(points: Sequence[Point], buckets: int, start: datetime, end: datetime) -> list[Point]:
    """At most two points (the minimum and the maximum, in time order) per bucket of time."""
    if len(points) <= 2 * buckets:
        return list(points)
    span = max((end - start).total_seconds(), 1e-9)
    groups: dict[int, list[Point]] = {}
    for point in points:
        index = min(buckets - 1, max(0, int((point.ts - start).total_seconds() / span * buckets)))
        groups.setdefault(index, []).append(point)
    out = []
    for index in sorted(groups):
        group = groups[index]
        low = min(group, key=lambda p: p.value)
        high = max(group, key=lambda p: p.value)
        out.extend(sorted({low, high}, key=lambda p: p.ts))
    return out


def runs(points: Sequence[Point]) -> list[list[Point]]:
    """The series split where the data paused for longer than ``GAP_FACTOR`` typical intervals."""
    if len(points) < 2:
        return [list(points)] if points else []
    steps = sorted((b.ts - a.ts).total_seconds() for a, b in zip(points, points[1:]))
    gap = max(GAP_FACTOR * steps[(len(steps) - 1) // 2], 1.0)  # the lower median: a few points are enough
    out = [[points[0]]]
    for previous, point in zip(points, points[1:]):
        if (point.ts - previous.ts).total_seconds() > gap:
            out.append([])
        out[-1].append(point)
    return out


def event_rows(xs: Sequence[float], min_gap: float, rows: int) -> list[int]:
    """A label row for each event x (in order) so that labels in one row stay ``min_gap`` apart."""
    last = [-math.inf] * rows
    out = []
    for x in xs:
        row = next((r for r in range(rows) if x - last[r] >= min_gap), min(range(rows), key=lambda r: last[r]))
        last[row] = x
        out.append(row)
    return out


def build_chart(points: Sequence[Point], start: datetime, end: datetime, thresholds: Mapping[str, float],
                events: Sequence[tuple[datetime, str, str]], zone: tzinfo, *, width: int = 720, height: int = 260,
                floor_zero: bool = False) -> Chart:
    """The chart of ``points`` from ``start`` to ``end`` with ``thresholds`` {level: value} and ``events`` (at, type, level)."""
    if end <= start:
        end = start + timedelta(minutes=1)
    box = Box(left=40.0, top=34.0, right=width - 96.0, bottom=height - 24.0)  # thresholds labelled right
    low, high, step = value_range([p.value for p in points], list(thresholds.values()), floor_zero)
    span = (end - start).total_seconds()

    def sx(ts: datetime) -> float:
        return round(box.left + (ts - start).total_seconds() / span * box.width, 1)

    def sy(value: float) -> float:
        return round(box.bottom - (value - low) / (high - low) * box.height, 1)

    shown = [p for p in points if start <= p.ts <= end]
    series = runs(thin(shown, int(box.width), start, end))
    lines = tuple(" ".join(f"{sx(p.ts)},{sy(p.value)}" for p in run) for run in series if len(run) > 1)
    dots = tuple((sx(run[0].ts), sy(run[0].value)) for run in series if len(run) == 1)
    top = max(shown, key=lambda p: p.value) if shown else None
    inside = [(number, e) for number, e in enumerate(events, start=1) if start <= e[0] <= end]
    xs = [sx(e[0]) for _, e in inside]
    marks = tuple(EventMark(number=number, x=x, type=e[1], level=e[2], row=row)
                  for (number, e), x, row in zip(inside, xs, event_rows(xs, 16.0, 2)))
    return Chart(
        width=width, height=height, box=box, lines=lines, dots=dots,
        thresholds=tuple(ThresholdLine(level, value, sy(value)) for level, value in thresholds.items()),
        x_ticks=x_ticks(start, end, zone, sx), y_ticks=y_ticks(low, high, step, sy), events=marks,
        peak=(sx(top.ts), sy(top.value)) if top else None, y_min=low, y_max=high,
    )


def rolling_sums(points: Sequence[Point], window_s: float) -> list[Point]:
    """The rolling sum over (t - window, t] at each increment (rainfall mm), in time order."""
    out, total, tail = [], 0.0, 0
    ordered = sorted(points, key=lambda p: p.ts)
    for point in ordered:
        total += point.value
        while (point.ts - ordered[tail].ts).total_seconds() >= window_s:
            total -= ordered[tail].value
            tail += 1
        out.append(Point(point.ts, round(total, 3)))
    return out
