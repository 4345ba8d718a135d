"""Area polygons for CAP: a closed ring of [lat, lon] points that does not cross itself."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from alerts.areas import MAX_POLYGON_POINTS, polygon_problem

SQUARE = [[-2.60, 121.10], [-2.60, 121.20], [-2.70, 121.20], [-2.70, 121.10], [-2.60, 121.10]]


def test_a_closed_square_is_a_polygon():
    assert polygon_problem(SQUARE) is None


def test_problems_are_named():
    assert "at least 4" in polygon_problem(SQUARE[:3])
    assert "not closed" in polygon_problem(SQUARE[:4])
    assert "crosses itself" in polygon_problem([[0, 0], [0, 1], [1, 0], [1, 1], [0, 0]])  # a bow tie
    assert "[lat, lon]" in polygon_problem([[121.1, -2.6], [121.2, -2.6], [121.2, -2.7], [121.1, -2.6]])
    assert "distinct" in polygon_problem([[0, 0], [0, 1], [0, 0], [0, 0]])
    assert "at most" in polygon_problem([[0, 0]] * (MAX_POLYGON_POINTS + 1))


@given(st.lists(st.integers(min_value=0, max_value=359), min_size=3, max_size=60, unique=True),
       st.floats(min_value=0.01, max_value=0.5))
def test_every_convex_ring_is_accepted(degrees, radius):
    angles = [math.radians(d) for d in sorted(degrees)]
    corners = [[-2.6 + radius * math.sin(a), 121.1 + radius * math.cos(a)] for a in angles]
    assert polygon_problem(corners + [corners[0]]) is None


@given(st.lists(st.integers(min_value=0, max_value=359), min_size=4, max_size=30, unique=True))
def test_swapping_two_corners_of_a_convex_ring_makes_it_cross(degrees):
    angles = [math.radians(d) for d in sorted(degrees)]
    corners = [[math.sin(a), math.cos(a)] for a in angles]
    corners[1], corners[2] = corners[2], corners[1]  # the edges 0-1 and 2-3 now join crossing chords
    assert "crosses itself" in polygon_problem(corners + [corners[0]])
