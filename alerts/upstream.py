"""Upstream warnings (spec section 11, "banjir kiriman"): a rise upstream warns the stations downstream.

The river network is the registry's ``downstream`` links: station -> ``[(target, travel_s)]``.
Everything here is pure:

* ``network_problems`` validates a network (each target exists, the links form no cycle).
* ``arrivals`` gives each station downstream of a source, transitively, the summed travel
  time of the quickest path (a station reached along two branches is warned once, for the
  wave that comes first).
* ``propagate`` turns one source event (its level and measurement time) into one ``Wave``
  per downstream station, with ``eta`` = measurement time + summed ``travel_s``.
* ``follow`` is the life of one station's ``upstream`` alert: it holds the waves of its
  sources, stands on the ``strongest`` (the highest level; at that level the earliest ETA)
  and closes when its last source closes.
* ``inhibited`` and ``all_clear_allowed`` say when the station's own alerts silence it.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from alerts.levels import Level, change_type

# station id -> [(downstream station id, travel time in seconds)]
Network = Mapping[str, Sequence[tuple[str, int]]]

DEFAULT_UPSTREAM_FROM = Level.SIAGA  # a source warns downstream from this level (rules: upstream_from)


def network_from_stations(stations: Iterable[Mapping]) -> dict[str, list[tuple[str, int]]]:
    """The network of registry rows (each with ``id`` and ``downstream: [{station_id, travel_s}]``)."""
    return {str(s["id"]): [(str(d["station_id"]), int(d["travel_s"])) for d in (s.get("downstream") or [])]
            for s in stations}


def find_cycle(network: Network) -> list[str] | None:
    """A cycle of the network as ``[a, b, ..., a]``, or None when the links form none."""
    colour: dict[str, int] = {}  # absent: unseen, 1: on the current path, 2: done
    for start in network:
        if start in colour:
            continue
        path = [start]
        stack = [iter(network.get(start, ()))]
        colour[start] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                colour[path.pop()] = 2
                stack.pop()
                continue
            target = step[0]
            if colour.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in colour:
                colour[target] = 1
                path.append(target)
                stack.append(iter(network.get(target, ())))
    return None


def network_problems(network: Network, known: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """``(station_id, field, message)`` for each link to an unknown station and for a cycle; empty when valid.

    ``known`` is every registered station id (default: the network's own keys).
    """
    ids = set(network if known is None else known)
    problems = []
    for station_id, links in network.items():
        for i, (target, travel_s) in enumerate(links):
            if target not in ids:
                problems.append((station_id, f"downstream.{i}.station_id", f"there is no station {target!r}"))
            elif target == station_id:
                problems.append((station_id, f"downstream.{i}.station_id", "a station cannot flow into itself"))
            if travel_s < 0:
                problems.append((station_id, f"downstream.{i}.travel_s", "must be at least 0"))
    if not problems:
        cycle = find_cycle(network)
        if cycle is not None:
            problems.append((cycle[0], "downstream", "the links form a cycle: " + " -> ".join(cycle)))
    return problems


def arrivals(network: Network, source: str) -> dict[str, int]:
    """Each station downstream of ``source`` (transitively) -> the summed ``travel_s`` of the quickest path."""
    best: dict[str, int] = {source: 0}
    queue = [(0, source)]
    while queue:
        elapsed, station = heapq.heappop(queue)
        if elapsed > best.get(station, elapsed):
            continue  # a quicker path got here first
        for target, travel_s in network.get(station, ()):
            arrival = elapsed + max(0, int(travel_s))
            if arrival < best.get(target, arrival + 1):
                best[target] = arrival
                heapq.heappush(queue, (arrival, target))
    best.pop(source)  # a source never warns itself, even in a (refused) cyclic network
    return best


@dataclasses.dataclass(frozen=True)
class Wave:
    """A flood wave from ``source_station_id`` at ``level``, measured at ``at``, expected downstream at ``eta``."""

    source_station_id: str
    level: Level
    at: datetime
    eta: datetime
    source_alert_id: int | None = None
    reading: Mapping | None = None  # the source reading that caused it (for the message)

    def to_doc(self) -> dict:
        """The wave as JSON (stored on the upstream alert)."""
        return {"source_station_id": self.source_station_id, "level": self.level.label, "at": _iso(self.at),
                "eta": _iso(self.eta), "source_alert_id": self.source_alert_id,
                "reading": dict(self.reading) if self.reading is not None else None}

    @classmethod
    def from_doc(cls, doc: Mapping) -> "Wave":
        """A wave stored with ``to_doc``."""
        return cls(source_station_id=doc["source_station_id"], level=Level.parse(doc["level"]),
                   at=_parse(doc["at"]), eta=_parse(doc["eta"]), source_alert_id=doc.get("source_alert_id"),
                   reading=doc.get("reading"))


def propagate(network: Network, source: str, level: Level, at: datetime, *, source_alert_id: int | None = None,
              reading: Mapping | None = None) -> dict[str, Wave]:
    """One wave per station downstream of ``source`` for a source event at ``level`` measured at ``at``."""
    return {station: Wave(source, level, at, at + timedelta(seconds=travel_s), source_alert_id, reading)
            for station, travel_s in arrivals(network, source).items()}


def strongest(waves: Iterable[Wave]) -> Wave | None:
    """The wave an upstream alert stands on: the highest level, at that level the earliest ETA."""
    return min(waves, key=lambda w: (-int(w.level), w.eta, w.source_station_id), default=None)


@dataclasses.dataclass(frozen=True)
class UpstreamChange:
    """What one source's news does to a station's upstream alert."""

    type: str | None  # raised, escalated, deescalated, cleared; None: the level stays
    wave: Wave | None  # the wave it stands on now; None once cleared
    waves: dict[str, Wave]  # the open sources' waves, by source station
    changed: bool = False  # the stored waves changed (a level, source or ETA may have)


def follow(waves: Mapping[str, Wave], source: str, wave: Wave | None) -> UpstreamChange:
    """The upstream alert after ``source`` rose to ``wave`` (None: the source's alert closed).

    A source's wave is replaced only by a higher level: its later crests at the same level
    come after the first one, and a falling gauge upstream does not recall water already on
    its way (the alert stays until the source's alert closes).
    """
    before = strongest(waves.values())
    after_waves = dict(waves)
    held = after_waves.get(source)
    if wave is None:
        if held is None:
            return UpstreamChange(None, before, after_waves)
        del after_waves[source]
    elif held is None or wave.level > held.level:
        after_waves[source] = wave
    else:
        return UpstreamChange(None, before, after_waves)
    after = strongest(after_waves.values())
    old = int(before.level) if before else 0
    new = int(after.level) if after else 0
    type_ = None if old == new else change_type(old, new)
    return UpstreamChange(type_, after, after_waves, changed=True)


def inhibited(upstream_level: Level, own_level: Level) -> bool:
    """The station's own water-level alert at the same or a higher level silences its upstream alert."""
    return own_level != Level.NORMAL and own_level >= upstream_level


def all_clear_allowed(own_active: bool) -> bool:
    """An upstream all-clear goes out only while no own alert of the station is active."""
    return not own_active


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
