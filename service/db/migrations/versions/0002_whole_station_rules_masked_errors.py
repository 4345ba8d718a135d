"""whole station rules; masked phone numbers in stored error texts

Until this revision a station's stored rules were merged over config/rules/defaults.json at
run time (JSON Merge Patch: ``null`` removed a key). From now on a station stores its whole
rules document and nothing is merged under it (alerts/station_rules.py). This revision
rewrites every station's rules as the document it ran with: the release's defaults merged
under it exactly as before, and every key the old parser filled in by itself written out
(``null`` for a switched-off threshold, window, section or rise rate), so each station keeps
exactly the thresholds it ran with. The defaults and the old parser's fallbacks are copied
here, as they were in that release, so that a later change of defaults.json cannot change
what this upgrade does.

It also masks phone numbers that a provider quoted in stored error texts
(``notifications.error_message``), which viewers can read.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:00:00
"""

from alembic import op
import sqlalchemy as sa

from service.phones import mask_numbers

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# config/rules/defaults.json of release 0001 (without its _source comment).
DEFAULTS_0001 = {
    "water_level": {"waspada": 2.0, "siaga": 2.5, "awas": 3.0, "clear_margin": 0.1, "hold_s": 0, "clear_hold_s": 600,
                    "rise_rate": {"per_hour": 0.5, "level": "waspada"}},
    "rainfall": {"1h": {"waspada": 10, "siaga": 20, "awas": 40},
                 "3h": {"waspada": 30, "siaga": 50, "awas": 80},
                 "24h": {"waspada": 50, "siaga": 100, "awas": 150}},
    "battery": {"low": 11.5, "clear_margin": 0.3},
    "stale_after_s": 1800,
    "notify_from": "waspada",
    "repeat_awas_s": 3600,
    "all_clear": True,
}
# What release 0001's parser used for a key the merged document lacked.
FALLBACKS_0001 = {"stale_after_s": 1800, "notify_from": "waspada", "repeat_awas_s": 3600, "all_clear": True}
WATER_FALLBACKS_0001 = {"waspada": None, "siaga": None, "awas": None, "clear_margin": 0, "hold_s": 0,
                        "clear_hold_s": 0, "rise_rate": None}
LEVELS = ("waspada", "siaga", "awas")
WINDOWS = ("1h", "3h", "24h")

stations = sa.table("stations", sa.column("id", sa.String), sa.column("rules", sa.JSON))
notifications = sa.table("notifications", sa.column("id", sa.Integer), sa.column("error_message", sa.Text))


def merge_0001(defaults, overrides):
    """Release 0001's merge of a station's rules over the defaults (null removes a key)."""
    result = {k: v for k, v in defaults.items()}
    for key, value in (overrides or {}).items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_0001(result[key], value)
        else:
            result[key] = strip_nulls(value)
    return result


def strip_nulls(value):
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    return value


def whole_document(stored):
    """The document a station ran with under release 0001, every fallback written out."""
    doc = merge_0001(DEFAULTS_0001, stored if isinstance(stored, dict) else {})
    for key, value in FALLBACKS_0001.items():
        doc.setdefault(key, value)
    for section in ("water_level", "rainfall", "battery"):
        doc.setdefault(section, None)
    if isinstance(doc["water_level"], dict):
        doc["water_level"] = {**WATER_FALLBACKS_0001, **doc["water_level"]}
    if isinstance(doc["rainfall"], dict):
        rain = {window: None for window in WINDOWS}
        rain["clear_hold_s"] = 1800
        rain.update(doc["rainfall"])
        for window in WINDOWS:
            if isinstance(rain[window], dict):
                rain[window] = {**{level: None for level in LEVELS}, **rain[window]}
        doc["rainfall"] = rain
    if isinstance(doc["battery"], dict):
        doc["battery"] = {"clear_margin": 0, **doc["battery"]}
    return doc


def upgrade() -> None:
    conn = op.get_bind()
    for row in conn.execute(sa.select(stations.c.id, stations.c.rules)).all():
        conn.execute(sa.update(stations).where(stations.c.id == row.id).values(rules=whole_document(row.rules)))
    rows = conn.execute(sa.select(notifications.c.id, notifications.c.error_message)
                        .where(notifications.c.error_message.is_not(None))).all()
    for row in rows:
        masked = mask_numbers(row.error_message)
        if masked != row.error_message:
            conn.execute(sa.update(notifications).where(notifications.c.id == row.id).values(error_message=masked))


def downgrade() -> None:
    # The whole documents are valid overrides for release 0001 too (merging them over the
    # defaults changes nothing); masked numbers cannot be unmasked.
    pass
