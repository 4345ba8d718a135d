"""Who is told about a station: the subscribers who can be told, indexed by area, kept until the table changes.

Targeting is service/subscribers.py's (``area_matches``): an index by kecamatan and desa gives
the same people without matching every subscriber's areas against the station's. Deciding
one event's audience by reading and decoding every subscriber took ~0.4 s with 10,000 of them,
inside the expansion's write transaction (on SQLite every other writer, the ingest included,
waited for it). ``Audiences`` keeps the index between expansions and rebuilds it when the
table's mark moved: its row count, highest id, latest ``updated_at`` and the total length of
the areas. Every change of a subscriber sets ``updated_at`` (the API, CSV import, the SMS
keywords), so a change another instance made is seen at this one's next expansion too.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import sqlalchemy as sa

from service.db import schema

t = schema.subscribers
_MARK = sa.select(sa.func.count(), sa.func.max(t.c.id), sa.func.max(t.c.updated_at),
                  sa.func.sum(sa.func.length(sa.cast(t.c.areas, sa.Text))))
_TOLD = (sa.select(t.c.id, t.c.phone, t.c.language, t.c.role, t.c.areas)
         .where(t.c.opted_out == sa.false()).order_by(t.c.id))


def name_key(name) -> str:
    """A kecamatan or desa name as compared: spaces folded, case-insensitive."""
    return " ".join(str(name or "").split()).casefold()


class Index:
    """The subscribers not opted out, by role, and each resident area by kecamatan and then desa ("": all of it)."""

    def __init__(self, rows: list) -> None:
        self.by_role: dict[str, list] = {}
        self.areas: dict[str, dict[str, dict[int, object]]] = {}
        for row in rows:  # ordered by id
            self.by_role.setdefault(row.role, []).append(row)
            for area in row.areas or []:
                kecamatan = name_key(area.get("kecamatan"))
                if kecamatan:
                    self.areas.setdefault(kecamatan, {}).setdefault(name_key(area.get("desa")), {})[row.id] = row

    def select(self, station_areas: list[Mapping] | None, roles: list[str], staff_match_areas: bool) -> list:
        """The subscribers of ``roles`` told about ``station_areas`` (None: every area), ordered by id."""
        found: dict[int, object] = {}
        for role in roles:
            if station_areas is None or (role == "staff" and not staff_match_areas):
                found.update((row.id, row) for row in self.by_role.get(role, []))
        for area in station_areas or []:
            desas = self.areas.get(name_key(area.get("kecamatan")), {})
            desa = name_key(area.get("desa"))
            for people in (desas.values() if not desa else (desas.get("", {}), desas.get(desa, {}))):
                found.update((i, row) for i, row in people.items() if row.role in roles)
        return [found[i] for i in sorted(found)]


class Audiences:
    """One process's index of who can be told, rebuilt when the subscribers table changed (its mark)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mark: tuple | None = None
        self._index: Index | None = None

    def audience(self, conn, station_areas: list[Mapping] | None, *, residents: bool, staff: bool,
                 staff_match_areas: bool = False) -> list:
        """Subscribers (not opted out) to tell about a station with ``station_areas``; as ``subscribers.audience``."""
        roles = [r for r, wanted in (("resident", residents), ("staff", staff)) if wanted]
        if not roles:
            return []
        return self._current(conn).select(station_areas, roles, staff_match_areas)

    def _current(self, conn) -> Index:
        mark = tuple(conn.execute(_MARK).one())
        with self._lock:
            if mark == self._mark and self._index is not None:
                return self._index
        index = Index(conn.execute(_TOLD).fetchall())
        with self._lock:
            self._mark, self._index = mark, index
        return index
