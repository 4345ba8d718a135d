"""A batch's station rows are written as the per-station UPDATE wrote them (service/station_states.py write)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from service import station_states
from service.db.schema import station_state, stations

WITA = timezone(timedelta(hours=8))


def _changes(station_id: str, *, checkpoint: bool) -> dict:
    seen = datetime(2026, 12, 1, 22, 15, 30, 123456, tzinfo=WITA)
    params = {
        "b_station_id": station_id, "b_level": "siaga", "b_online": False, "b_last_seen": seen,
        "b_latest": {"water_level": {"value": 2.61, "ts": "2026-12-01T14:15:00Z"}, "catatan": "banjir ö"},
        "b_rain_counter": {"ts": "2026-12-01T14:10:00+00:00", "count": 41} if checkpoint else None,
        "b_updated_at": seen + timedelta(seconds=1), "b_quality_due_at": None if checkpoint else seen,
        "b_engine_delta": {"base_key": [1796150603000000, "water_level"], "rain_sums": [0.5, 1.25]},
    }
    if checkpoint:
        params["b_engine"] = {"v": 2, "base_key": [1796150603000000, "water_level"], "after_id": None}
    return params


def _update_statement(with_checkpoint: bool):
    """The reference: one UPDATE per station, as SQLAlchemy binds it (every dialect's way before)."""
    values = {column: sa.bindparam(f"b_{column}", type_=station_state.c[column].type)
              for column in station_states.ROW_COLUMNS}
    values["engine_delta"] = sa.bindparam("b_engine_delta", type_=station_state.c.engine_delta.type)
    values["version"] = station_state.c.version + 1
    if with_checkpoint:
        values["engine"] = sa.bindparam("b_engine", type_=station_state.c.engine.type)
    return (sa.update(station_state).where(station_state.c.station_id == sa.bindparam("b_station_id"))
            .values(**values))


def _row_text(conn, station_id: str) -> dict:
    columns = [sa.cast(c, sa.Text).label(c.name) if isinstance(c.type, sa.JSON) else c
               for c in station_state.c if c.name != "station_id"]
    return dict(conn.execute(sa.select(*columns).where(station_state.c.station_id == station_id)).one()._mapping)


def test_the_batch_write_stores_what_the_per_station_update_stored(services):
    with services.engine.begin() as conn:
        ids = conn.execute(sa.select(stations.c.id).order_by(stations.c.id).limit(4)).scalars().all()
        station_states._create_rows(conn, ids, datetime.now(timezone.utc))
        conn.execute(sa.update(station_state).where(station_state.c.station_id == ids[0]).values(engine={"old": 1}))
        conn.execute(sa.update(station_state).where(station_state.c.station_id == ids[2]).values(engine={"old": 1}))
        # The reference: one UPDATE per station, as SQLAlchemy binds it (every dialect's way before).
        conn.execute(_update_statement(False), [_changes(ids[0], checkpoint=False)])
        conn.execute(_update_statement(True), [_changes(ids[1], checkpoint=True)])
        station_states.StationStates().write(conn, [_changes(ids[2], checkpoint=False),
                                                    _changes(ids[3], checkpoint=True)])
    with services.engine.connect() as conn:
        assert _row_text(conn, ids[2]) == _row_text(conn, ids[0])
        assert _row_text(conn, ids[3]) == _row_text(conn, ids[1])
        assert _row_text(conn, ids[2])["engine"] == '{"old": 1}'  # no checkpoint due: the stored one stays
        assert _row_text(conn, ids[3])["version"] == 1
