"""The shape of a warned place, as CAP consumers draw it: a polygon, checked here. Pure.

A station's ``areas[].polygon`` is a list of ``[lat, lon]`` points forming a closed ring
(the last point repeats the first), as CAP 1.2 and Google Public Alerts want it: at least
four points, not crossing itself.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_POLYGON_POINTS = 500  # a desa boundary simplified for CAP; keeps the self-crossing check quick


def polygon_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why ``points`` is not a usable CAP polygon, or None when it is one."""
    if len(points) < 4:
        return "needs at least 4 [lat, lon] points (3 corners and the first one again)"
    if len(points) > MAX_POLYGON_POINTS:
        return f"has {len(points)} points; simplify it to at most {MAX_POLYGON_POINTS}"
    for i, (lat, lon) in enumerate(points):
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return f"point {i} [{lat:g}, {lon:g}] is not [lat, lon] (lat -90..90, lon -180..180)"
    if list(points[0]) != list(points[-1]):
        return "is not closed: the last point must repeat the first"
    if len({(lat, lon) for lat, lon in points}) < 3:
        return "needs at least 3 distinct corners"
    crossing = _self_crossing(points)
    if crossing is not None:
        return f"crosses itself (edges {crossing[0]} and {crossing[1]})"
    return None


def _self_crossing(ring: Sequence[Sequence[float]]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges of the closed ``ring`` that touch or cross, if any."""
    edges = [(ring[i], ring[i + 1]) for i in range(len(ring) - 1)]
    count = len(edges)
    for i in range(count):
        for j in range(i + 1, count):
            if j == i + 1 or (i == 0 and j == count - 1):
                continue  # neighbours share a corner
            if _segments_meet(*edges[i], *edges[j]):
                return i, j
    return None


def _orientation(a, b, c) -> int:
    cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return (cross > 0) - (cross < 0)


def _on_segment(a, b, c) -> bool:
    """``c`` (collinear with a-b) lies within the segment's bounding box."""
    return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])


def _segments_meet(p1, p2, q1, q2) -> bool:
    o1, o2, o3, o4 = _orientation(p1, p2, q1), _orientation(p1, p2, q2), _orientation(q1, q2, p1), _orientation(q1, q2, p2)
    if o1 != o2 and o3 != o4:
        return True
    return ((o1 == 0 and _on_segment(p1, p2, q1)) or (o2 == 0 and _on_segment(p1, p2, q2))
            or (o3 == 0 and _on_segment(q1, q2, p1)) or (o4 == 0 and _on_segment(q1, q2, p2)))
