"""A small rainfall-runoff model so that simulated rain and simulated rivers agree.

It is a teaching-grade model, good enough to drive the warning chain, not to forecast:

1. Each river gauge drains a *catchment* lying in one rain *cell* of the scenario.
   The first ``initial_loss_mm`` of rain wet the soil and the leaves and make no runoff
   (the loss store empties again at ``loss_recovery_mm_h``), so a light shower does
   not move the river. The rest (effective rain, mm in a time step) becomes inflow to a
   **linear reservoir**::

       inflow I [m³/s] = effective rain [m] × area [m²] × runoff coefficient C / dt [s]

   delayed by ``lag_s`` (the time the water needs to reach the channel, taken from the
   seed's rain-gauge ``downstream`` travel time where one exists).
2. The reservoir holds storage S [m³] and releases quick flow ``Q = S / k``; with I
   constant over a step of length dt the exact solution is used, so any dt is stable::

       S(t + dt) = I·k + (S(t) − I·k)·exp(−dt / k)

3. Discharge at the gauge is base flow plus quick flow, and the stage (water level above
   the gauge zero) comes from a power-law **rating curve** ``h = h0 + a·Q^b``.
4. **Routing**: a gauge's quick flow reaches the next gauge downstream (the seed's
   ``downstream`` list with ``travel_s``) as a pure delay, and enters that gauge's
   reservoir, which attenuates it. Base flows are not routed: each gauge's ``base_m3s``
   already includes the water from upstream on a dry day.

Pure Python, no I/O: ``load_network`` takes already-parsed JSON.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class RatingCurve:
    """Stage–discharge relation ``h = h0 + a·Q^b`` (h in m above gauge zero, Q in m³/s)."""

    h0: float
    a: float
    b: float

    def stage(self, discharge: float) -> float:
        """Water level for a discharge."""
        return self.h0 + self.a * max(discharge, 0.0) ** self.b

    def discharge(self, stage: float) -> float:
        """Discharge for a water level (the inverse of ``stage``); 0 at or below ``h0``."""
        if stage <= self.h0:
            return 0.0
        return ((stage - self.h0) / self.a) ** (1.0 / self.b)

    @classmethod
    def through(cls, h0: float, low: tuple[float, float], high: tuple[float, float]) -> "RatingCurve":
        """The curve with zero-flow stage ``h0`` passing through two ``(Q, h)`` points."""
        (q1, h1), (q2, h2) = low, high
        b = math.log((h2 - h0) / (h1 - h0)) / math.log(q2 / q1)
        a = (h1 - h0) / q1**b
        return cls(h0=h0, a=a, b=b)


@dataclasses.dataclass(frozen=True)
class Catchment:
    """The area draining to one river gauge and how it turns rain into flow."""

    station_id: str
    cell: str  # the scenario rain cell this catchment lies in
    area_km2: float
    runoff_coeff: float  # share of rain that becomes quick flow (0..1)
    k_s: float  # linear-reservoir time constant, seconds
    base_m3s: float  # dry-weather flow at the gauge
    rating: RatingCurve
    lag_s: float = 0.0  # delay from rain on the cell to inflow into the reservoir
    initial_loss_mm: float = 8.0  # rain absorbed before any runoff
    loss_recovery_mm_h: float = 0.25  # how fast that absorbing capacity comes back

    def inflow_m3s(self, rain_mm: float, dt_s: float) -> float:
        """Mean inflow during a step in which ``rain_mm`` fell on the catchment."""
        return rain_mm / 1000.0 * self.area_km2 * 1e6 * self.runoff_coeff / dt_s


@dataclasses.dataclass(frozen=True)
class Link:
    """Quick flow of ``upstream`` reaches ``downstream`` after ``travel_s`` seconds."""

    upstream: str
    downstream: str
    travel_s: float


class RiverNetwork:
    """Catchments linked by travel times, stepped forward with a fixed time step."""

    def __init__(self, catchments: list[Catchment], links: list[Link], dt_s: float):
        if dt_s <= 0:
            raise ValueError("dt_s must be positive")
        self.dt_s = dt_s
        self.catchments = {c.station_id: c for c in catchments}
        self.links = [link for link in links if link.upstream in self.catchments and link.downstream in self.catchments]
        self.order = _topological(list(self.catchments), self.links)
        self.storage = {sid: 0.0 for sid in self.catchments}
        self.loss_filled = {sid: 0.0 for sid in self.catchments}  # mm of the initial loss already used
        # Delay lines: rain inflow per catchment, quick flow per link (oldest first).
        self._rain_delay = {
            sid: deque([0.0] * self._steps(c.lag_s), maxlen=self._steps(c.lag_s) or None)
            for sid, c in self.catchments.items()
        }
        self._link_delay = {
            (lk.upstream, lk.downstream): deque([0.0] * self._steps(lk.travel_s)) for lk in self.links
        }

    def _steps(self, seconds: float) -> int:
        return max(0, round(seconds / self.dt_s))

    def set_quick_flow(self, station_id: str, quick_m3s: float) -> None:
        """Start a catchment wet: storage such that its quick flow is ``quick_m3s``."""
        self.storage[station_id] = max(quick_m3s, 0.0) * self.catchments[station_id].k_s

    def quick_flow(self, station_id: str) -> float:
        """Quick flow (above base flow) leaving a catchment now, m³/s."""
        return self.storage[station_id] / self.catchments[station_id].k_s

    def discharge(self, station_id: str) -> float:
        """Total discharge at a gauge now, m³/s."""
        return self.catchments[station_id].base_m3s + self.quick_flow(station_id)

    def stage(self, station_id: str) -> float:
        """Water level at a gauge now, m above gauge zero."""
        return self.catchments[station_id].rating.stage(self.discharge(station_id))

    def step(self, rain_mm_by_cell: Mapping[str, float]) -> None:
        """Advance one time step in which ``rain_mm_by_cell[cell]`` mm fell on each cell."""
        routed: dict[str, float] = {sid: 0.0 for sid in self.catchments}
        for sid in self.order:
            c = self.catchments[sid]
            local = c.inflow_m3s(self._effective_rain(c, rain_mm_by_cell.get(c.cell, 0.0)), self.dt_s)
            delay = self._rain_delay[sid]
            if delay.maxlen:
                arriving = delay[0]
                delay.append(local)  # maxlen drops the oldest
                local = arriving
            inflow = local + routed[sid]
            decay = math.exp(-self.dt_s / c.k_s)
            self.storage[sid] = inflow * c.k_s + (self.storage[sid] - inflow * c.k_s) * decay
            for lk in self.links:
                if lk.upstream != sid:
                    continue
                line = self._link_delay[(lk.upstream, lk.downstream)]
                line.append(self.quick_flow(sid))
                routed[lk.downstream] += line.popleft()


    def _effective_rain(self, c: Catchment, rain_mm: float) -> float:
        """Rain left for runoff after the initial loss store took its share."""
        filled = self.loss_filled[c.station_id]
        absorbed = min(rain_mm, max(c.initial_loss_mm - filled, 0.0))
        recovered = c.loss_recovery_mm_h * self.dt_s / 3600.0
        self.loss_filled[c.station_id] = max(0.0, filled + absorbed - (recovered if rain_mm <= 0 else 0.0))
        return rain_mm - absorbed


def _topological(nodes: list[str], links: list[Link]) -> list[str]:
    """Upstream before downstream; raises ValueError on a loop."""
    incoming = {n: 0 for n in nodes}
    for lk in links:
        incoming[lk.downstream] += 1
    ready = [n for n in nodes if incoming[n] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for lk in links:
            if lk.upstream == node:
                incoming[lk.downstream] -= 1
                if incoming[lk.downstream] == 0:
                    ready.append(lk.downstream)
    if len(order) != len(nodes):
        raise ValueError("the river network has a loop")
    return order


def _rating(spec: Mapping[str, Any]) -> RatingCurve:
    """A rating from ``{h0, a, b}`` or from ``{h0, through: [[Q1, h1], [Q2, h2]]}``."""
    if "through" in spec:
        low, high = spec["through"]
        return RatingCurve.through(float(spec["h0"]), (float(low[0]), float(low[1])), (float(high[0]), float(high[1])))
    return RatingCurve(float(spec["h0"]), float(spec["a"]), float(spec["b"]))


def load_network(seed_stations: list[Mapping[str, Any]], model: Mapping[str, Any], dt_s: float) -> RiverNetwork:
    """Build the network from the seed stations and the catchment model (``sensors/catchments.json``).

    Links come from each river station's ``downstream`` list; a rain gauge whose
    ``downstream`` names a river station in the same cell sets that catchment's ``lag_s``.
    """
    by_id = {s["id"]: s for s in seed_stations}
    gauges = model.get("rain_gauges", {})
    lags: dict[str, float] = {}
    for gauge_id, cell in gauges.items():
        for target in by_id.get(gauge_id, {}).get("downstream") or []:
            river = model["rivers"].get(target["station_id"])
            if river and river["cell"] == cell:
                lags[target["station_id"]] = float(target["travel_s"])
    catchments = []
    for sid, spec in model["rivers"].items():
        if sid not in by_id:
            continue
        rating = _rating(spec["rating"])
        catchments.append(
            Catchment(
                station_id=sid,
                cell=spec["cell"],
                area_km2=float(spec["area_km2"]),
                runoff_coeff=float(spec["runoff_coeff"]),
                k_s=float(spec["k_h"]) * 3600.0,
                base_m3s=float(spec["base_m3s"]),
                rating=rating,
                lag_s=float(spec.get("lag_s", lags.get(sid, 0.0))),
                initial_loss_mm=float(spec.get("initial_loss_mm", model.get("initial_loss_mm", 8.0))),
                loss_recovery_mm_h=float(spec.get("loss_recovery_mm_h", model.get("loss_recovery_mm_h", 0.25))),
            )
        )
    links = [
        Link(sid, d["station_id"], float(d["travel_s"]))
        for sid, station in by_id.items()
        if sid in model["rivers"]
        for d in station.get("downstream") or []
        if d["station_id"] in model["rivers"]
    ]
    return RiverNetwork(catchments, links, dt_s)
