"""The audience index (service/audience.py): the same people as matching every subscriber's areas, kept until
the subscribers table changes."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from service import subscribers
from service.audience import Audiences
from service.db import schema
from service.db.migrate import upgrade

KECAMATAN = ["Malili", "Wotu", "Nuha"]
DESA = [None, "Baruga", "Lampenai", "Pongkeru"]


def _area(rng: random.Random) -> dict:
    kecamatan = rng.choice(KECAMATAN)
    desa = rng.choice(DESA)
    # The same names as people type them: case and spaces vary, the match does not.
    if rng.random() < 0.3:
        kecamatan = f"  {kecamatan.upper()} "
    if desa and rng.random() < 0.3:
        desa = desa.lower()
    return {"kecamatan": kecamatan, "desa": desa}


def _people(conn, rng: random.Random, count: int, now: datetime) -> None:
    for i in range(count):
        areas = [_area(rng) for _ in range(rng.choice([0, 1, 1, 2]))]
        conn.execute(sa.insert(schema.subscribers).values(
            phone=f"+628120000{i:04d}", language=rng.choice(["id", "en"]), role=rng.choice(["resident", "staff"]),
            areas=areas, opted_out=rng.random() < 0.15, source="api", created_at=now, updated_at=now))


def _matched(conn, station_areas, residents: bool, staff: bool, staff_match_areas: bool) -> list[int]:
    """Every subscriber's areas matched one by one (``subscribers.area_matches``): what the index must give."""
    roles = [r for r, wanted in (("resident", residents), ("staff", staff)) if wanted]
    out = []
    for row in conn.execute(sa.select(schema.subscribers).order_by(schema.subscribers.c.id)):
        if row.opted_out or row.role not in roles:
            continue
        everyone = station_areas is None or (row.role == "staff" and not staff_match_areas)
        if everyone or subscribers.areas_overlap(station_areas, row.areas or []):
            out.append(row.id)
    return out


def test_the_index_finds_whom_matching_each_subscribers_areas_finds(engine):
    upgrade(engine)
    rng = random.Random(19)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        _people(conn, rng, 300, now)
    audiences = Audiences()
    station_areas = [None, [], [{"kecamatan": "Malili", "desa": None}], [{"kecamatan": "wotu", "desa": "BARUGA"}],
                     [{"kecamatan": "Nuha", "desa": "Pongkeru"}, {"kecamatan": "Malili", "desa": "Lampenai"}],
                     [{"kecamatan": "Towuti", "desa": None}]]
    checked = 0
    with engine.connect() as conn:
        for areas, residents, staff, match in itertools.product(station_areas, [True, False], [True, False], [True, False]):
            expected = _matched(conn, areas, residents, staff, match)
            found = [row.id for row in audiences.audience(conn, areas, residents=residents, staff=staff,
                                                          staff_match_areas=match)]
            assert found == expected, (areas, residents, staff, match)
            checked += bool(expected)
    assert checked > 20  # most cases tell somebody: the comparison is not between empty lists


def test_a_change_to_a_subscriber_is_seen_at_the_next_look(engine):
    upgrade(engine)
    now = datetime.now(timezone.utc)
    wotu = [{"kecamatan": "Wotu", "desa": None}]
    with engine.begin() as conn:
        person = subscribers.create(conn, {"phone": "+6281200000001", "areas": [{"kecamatan": "Malili"}]}, now)
    audiences = Audiences()

    def told() -> list[str]:
        with engine.connect() as conn:
            return [row.phone for row in audiences.audience(conn, wotu, residents=True, staff=False)]

    assert told() == []
    with engine.begin() as conn:  # moved to Wotu (the API's update)
        subscribers.update(conn, person.id, {"areas": [{"kecamatan": "Wotu", "desa": "Lampenai"}]},
                           now + timedelta(seconds=1))
    assert told() == ["+6281200000001"]
    with engine.begin() as conn:  # BERHENTI
        subscribers.set_opted_out(conn, person.id, True, now + timedelta(seconds=2))
    assert told() == []
    with engine.begin() as conn:  # a new resident, and one removed
        subscribers.set_opted_out(conn, person.id, False, now + timedelta(seconds=3))
        subscribers.create(conn, {"phone": "+6281200000002", "areas": wotu}, now + timedelta(seconds=3))
    assert told() == ["+6281200000001", "+6281200000002"]
    with engine.begin() as conn:
        subscribers.delete(conn, person.id)
    assert told() == ["+6281200000002"]
