"""Every table of the service, as SQLAlchemy Core.

All timestamps are stored in UTC (``UTCDateTime``); the wire and the API speak
RFC 3339 UTC, and only people-facing text converts to WITA.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always returned timezone-aware (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text from a bare query
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


stations = Table(
    "stations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("river", String(120), nullable=True),
    Column("kecamatan", String(120), nullable=True),
    Column("desa", String(120), nullable=True),
    Column("lat", Float, nullable=True),
    Column("lon", Float, nullable=True),
    Column("metrics", JSON, nullable=False),  # ["water_level", "battery", ...]
    Column("areas", JSON, nullable=False),  # [{"kecamatan": .., "desa": ..}]
    Column("mm_per_tip", Float, nullable=True),
    Column("expected_interval_s", Integer, nullable=False, server_default="600"),
    Column("plausible", JSON, nullable=False),  # {"water_level": [min, max]}
    Column("downstream", JSON, nullable=False),  # [{"station_id": .., "travel_s": ..}]
    Column("cap_radius_km", Float, nullable=False, server_default="5"),  # CAP circle for areas without a polygon
    # The whole place phrase of its SMS when the river and the name are too long (spec section 9).
    Column("sms_name", String(24), nullable=True),
    # [{"id", "at", "upstream", "duration_s"}]: the sirens this station's alerts sound (spec section 12).
    Column("sirens", JSON, nullable=True),
    Column("rules", JSON, nullable=False),  # spec section 3 document
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# One row per station: what the dashboard shows and what the rules engine resumes from.
station_state = Table(
    "station_state",
    metadata,
    Column("station_id", String(64), ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True),
    Column("level", String(16), nullable=False, server_default="normal"),
    Column("online", Boolean, nullable=False, server_default=text("true")),
    Column("last_seen", UTCDateTime, nullable=True),  # receive time of the latest accepted sample
    Column("latest", JSON, nullable=False),  # {metric: {"value": v, "ts": iso}}
    Column("rain_counter", JSON, nullable=True),  # {"ts": iso, "count": n} of the newest rain_tips
    # The rules engine's checkpoint (alerts.engine.checkpoint; a whole state before release 2),
    # rewritten now and then: with the readings judged after it, it rebuilds the state exactly.
    Column("engine", JSON, nullable=True),
    # What changed in the engine state at every batch: {"base_key": ..., "rain_sums": ...} (small).
    Column("engine_delta", JSON, nullable=True),
    # Raised by every write of the row (onupdate): an ingest instance that holds the station's state
    # in memory re-reads it only when another writer has been here (service/station_states.py).
    Column("version", Integer, nullable=False, server_default="0", onupdate=literal_column("version + 1")),
    Column("updated_at", UTCDateTime, nullable=False),
    # When a doubtful water level held back by the engine is judged as it is, if no sample comes (spec 17).
    Column("quality_due_at", UTCDateTime, nullable=True),
)

readings = Table(
    "readings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(64), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("value", Float, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # good | doubtful | spike (spec section 17): what the quality check made of a water level.
    Column("quality", String(8), nullable=False, server_default="good"),
    # The identity of a sample (spec section 1): a redelivery is a no-op.
    UniqueConstraint("station_id", "metric", "ts", name="uq_readings_sample"),
)

# One row per rejected payload (spec section 9), however many of its samples were bad.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("source", String(16), nullable=False),  # mqtt | http
    Column("topic", String(512), nullable=False),
    Column("station_id", String(64), nullable=True),
    Column("reason", String(32), nullable=False),  # the first rejection's reason
    Column("detail", Text, nullable=False, server_default=""),  # the first rejection's detail
    Column("payload", Text, nullable=False),  # whole (at most 256 KiB); undecodable bytes escaped
    # [{index, metric, reason, detail, ts?}] of the first 1,000 rejections; rejected_count counts them all.
    Column("rejections", JSON, nullable=True),
    Column("rejected_count", Integer, nullable=False, server_default="1"),
    Column("reasons", String(400), nullable=False, server_default=""),  # " reason_a reason_b ": filters
    Column("payload_bytes", Integer, nullable=True),  # size of the payload as received (null: older release)
    Column("truncated", Boolean, nullable=False, server_default=text("false")),  # payload not kept whole
    Column("size_bytes", Integer, nullable=False, server_default="0"),  # what EWS_DEAD_LETTER_MAX_MB counts
    Column("replayed_at", UTCDateTime, nullable=True),
    Column("replay", JSON, nullable=True),  # {stored, duplicates, rejected, reasons} of the replay
    Index("ix_dead_letters_reason", "reason"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(120), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex; the token is shown once
    Column("prefix", String(12), nullable=False),  # first characters, to recognise a token in a list
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(120), nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
    # Gateway tokens only: the station ids it may post readings for (spec section 9); null otherwise.
    Column("stations", JSON, nullable=True),
    # A gateway token of the first release (no stations): until then it learns the stations it
    # posts for (service/tokens.py, docs/api.md); null for every token issued since.
    Column("stations_learn_until", UTCDateTime, nullable=True),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("station_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # water_level | rainfall | upstream | offline | battery | ...
    Column("level", String(16), nullable=False),
    Column("peak_level", String(16), nullable=False),
    Column("state", String(8), nullable=False),  # active | closed
    Column("opened_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime, nullable=True),
    Column("ack_by", String(120), nullable=True),
    Column("ack_at", UTCDateTime, nullable=True),
    Column("ack_note", Text, nullable=True),
    Column("exercise", Boolean, nullable=False, server_default=text("false")),
    # The drill (POST /exercises) whose readings raised it; NULL for real alerts (and EWS_EXERCISE).
    Column("exercise_id", Integer, ForeignKey("exercises.id"), nullable=True),
    Column("last_notified_at", UTCDateTime, nullable=True),  # drives AWAS reminders
    # An upstream alert (spec section 11): the source it stands on and when that wave arrives here,
    # and the waves of all its open sources ({source station: alerts.upstream.Wave.to_doc()}).
    Column("source_station_id", String(64), nullable=True),
    Column("eta", UTCDateTime, nullable=True),
    Column("sources", JSON, nullable=True),
    # One open alert per (station, kind), enforced by the database (partial unique indexes):
    # one among the real alerts, and one per exercise, so a drill never blocks a real warning.
    Index(
        "uq_alerts_one_open",
        "station_id",
        "kind",
        unique=True,
        sqlite_where=text("state = 'active' AND exercise_id IS NULL"),
        postgresql_where=text("state = 'active' AND exercise_id IS NULL"),
    ),
    Index(
        "uq_alerts_one_open_exercise",
        "exercise_id",
        "station_id",
        "kind",
        unique=True,
        sqlite_where=text("state = 'active' AND exercise_id IS NOT NULL"),
        postgresql_where=text("state = 'active' AND exercise_id IS NOT NULL"),
    ),
    Index("ix_alerts_state_opened", "state", "opened_at"),
)

# A station out of service for calibration or repair (spec section 10): nothing of it reaches residents.
maintenance_windows = Table(
    "maintenance_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(64), ForeignKey("stations.id", ondelete="CASCADE"), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),  # moved to now when an operator ends it early
    Column("reason", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("ended_by", String(200), nullable=True),
    # Set when the end was announced (alerts still at or above notify_from told to residents again).
    Column("announced_at", UTCDateTime, nullable=True),
    Index("ix_maintenance_windows_station", "station_id", "ends_at"),
)

# Drills (spec section 10): staff start one for some stations until a time; its readings, engine
# state and alerts are its own, so a real flood during a drill warns as always.
exercises = Table(
    "exercises",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stations", JSON, nullable=False),  # ["PKR-LASKAP", ...]
    Column("residents", Boolean, nullable=False, server_default=text("false")),
    Column("note", Text, nullable=False, server_default=""),
    Column("started_at", UTCDateTime, nullable=False),
    Column("until", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),  # NULL while it runs
    Column("created_by", String(120), nullable=False),
    Column("ended_by", String(120), nullable=True),  # who ended it; "until" when it ran out
    Index("ix_exercises_ended", "ended_at"),
)

# Readings that came on {prefix}/exercise/stations/{id}/readings: never mixed with real ones.
exercise_readings = Table(
    "exercise_readings",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("exercise_id", Integer, ForeignKey("exercises.id"), nullable=False),
    Column("station_id", String(64), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("value", Float, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("exercise_id", "station_id", "metric", "ts", name="uq_exercise_readings_sample"),
)

# The rules engine's state of one station within one exercise (station_state is the real one).
exercise_state = Table(
    "exercise_state",
    metadata,
    Column("exercise_id", Integer, ForeignKey("exercises.id"), primary_key=True),
    Column("station_id", String(64), primary_key=True),
    Column("level", String(16), nullable=False, server_default="normal"),
    Column("last_seen", UTCDateTime, nullable=True),
    Column("latest", JSON, nullable=False),
    Column("rain_counter", JSON, nullable=True),
    Column("engine", JSON, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("alerts.id"), nullable=False),
    Column("type", String(16), nullable=False),  # raised escalated deescalated acknowledged cleared reminded
    Column("level", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),  # measurement time of the causing reading (or wall time)
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("reading", JSON, nullable=True),  # {"metric", "value", "ts"} that caused it
    Column("by", String(120), nullable=True),
    Column("note", Text, nullable=True),
    # The outbox link to the dispatcher: written in the same transaction as the event.
    # none = nobody to tell; pending = the dispatcher must expand it; done = expanded.
    Column("dispatch", String(8), nullable=False, server_default="none"),
    Index("ix_alert_events_alert", "alert_id"),
    Index("ix_alert_events_dispatch", "dispatch"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("phone", String(20), nullable=False, unique=True),  # E.164
    Column("name", String(200), nullable=True),
    Column("language", String(2), nullable=False, server_default="id"),
    Column("role", String(16), nullable=False, server_default="resident"),
    Column("areas", JSON, nullable=False),  # [{"kecamatan": .., "desa": .. or null}]
    Column("opted_out", Boolean, nullable=False, server_default=text("false")),
    Column("opted_out_at", UTCDateTime, nullable=True),
    Column("source", String(16), nullable=False, server_default="api"),  # api | csv | sms
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

broadcasts = Table(
    "broadcasts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(120), nullable=False),
    Column("body", Text, nullable=False),
    Column("areas", JSON, nullable=False),
    Column("roles", JSON, nullable=False),
    Column("dispatch", String(8), nullable=False, server_default="pending"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("alert_events.id"), nullable=True),
    Column("broadcast_id", Integer, ForeignKey("broadcasts.id"), nullable=True),
    Column("alert_id", BigInteger().with_variant(Integer(), "sqlite"), nullable=True),
    Column("subscriber_id", Integer, nullable=True),
    Column("phone", String(20), nullable=False),
    Column("language", String(2), nullable=False),
    Column("kind", String(16), nullable=False),  # warning reminder all_clear operational broadcast reply
    Column("body", Text, nullable=False),
    # alerts.priority.priority(kind, level, exercise): 0 (AWAS warning) goes first; set when the row is created.
    Column("priority", Integer, nullable=False, server_default="6"),
    # pending -> sending -> sent -> delivered | undelivered | failed ; unknown = fate to reconcile;
    # spooled = in gammu-smsd's outbox, not yet sent by the modem (sent_at is set when it is)
    Column("status", String(12), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("provider", String(16), nullable=True),
    Column("provider_sid", String(64), nullable=True),
    Column("error_code", String(16), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    # A warning or reminder not handed to the provider by then is ``expired`` (EWS_SMS_VALIDITY_S); None: no limit.
    Column("valid_until", UTCDateTime, nullable=True),
    # Never two messages for the same event to the same person, across restarts and retries.
    UniqueConstraint("event_id", "subscriber_id", name="uq_notifications_event_subscriber"),
    UniqueConstraint("broadcast_id", "subscriber_id", name="uq_notifications_broadcast_subscriber"),
    Index("ix_notifications_status", "status", "next_attempt_at"),
    Index("ix_notifications_alert", "alert_id"),
    Index("ix_notifications_sid", "provider_sid"),
    # The claim's order (spec section 10, "Urgent first"): most urgent, then oldest.
    Index("ix_notifications_claim", "status", "priority", "created_at", "id"),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("phone", String(20), nullable=False),
    Column("body", Text, nullable=False),
    Column("keyword", String(16), nullable=True),
    Column("reply", Text, nullable=True),
    Column("provider_sid", String(64), nullable=True, unique=True),  # dedupes webhook retries
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(120), nullable=False),  # token name (and id)
    Column("action", String(32), nullable=False),  # create update delete ack broadcast revoke
    Column("entity", String(32), nullable=False),  # station rules subscriber token alert broadcast
    Column("entity_id", String(64), nullable=True),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
)

# Every CAP message as issued (service/cap.py), served unchanged; its id is the WMO identifier's seq.
cap_messages = Table(
    "cap_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("alerts.id"), nullable=False),
    Column("number", Integer, nullable=False),  # position in the alert's chain: 1, 2, ...
    # The event whose state the message carries (a renewal carries the same one again).
    Column("event_id", BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("alert_events.id"), nullable=False),
    Column("identifier", String(200), nullable=False, unique=True),
    Column("msg_type", String(8), nullable=False),  # Alert Update Cancel
    Column("sent", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("headline", Text, nullable=False),
    Column("xml", Text, nullable=False),
    Index("ix_cap_messages_alert", "alert_id"),
    # One message per chain position: a second issuer's insert fails instead of forking the chain.
    UniqueConstraint("alert_id", "number", name="uq_cap_messages_alert_number"),
)

# Sirens (spec section 12): one row per siren of the registry's stations, what it was last told
# and what it last answered; the automatic decisions resume from it after a restart.
siren_state = Table(
    "siren_state",
    metadata,
    Column("siren_id", String(64), primary_key=True),
    Column("station_id", String(64), nullable=False),
    Column("state", String(8), nullable=False, server_default="unknown"),  # on off unknown error (last ack)
    Column("commanded", JSON, nullable=True),  # {action, level, alert_id, on_until}: the last on/off sent
    Column("override", JSON, nullable=True),  # {action, level, alert_id}: an operator's command that wins
    Column("trouble", String(8), nullable=True),  # silent | error while its siren alert should stay open
    Column("last_command_id", String(64), nullable=True),
    Column("last_ack", JSON, nullable=True),  # {command_id, state, detail, at}
    Column("updated_at", UTCDateTime, nullable=False),
)

# Every command published to a siren; one awaiting its ack is re-sent (same command_id) by
# whichever instance leads, also after a restart: it is stored before it is published.
siren_commands = Table(
    "siren_commands",
    metadata,
    Column("command_id", String(64), primary_key=True),
    Column("siren_id", String(64), nullable=False),
    Column("station_id", String(64), nullable=False),
    Column("action", String(8), nullable=False),  # on off test
    Column("level", String(16), nullable=True),
    Column("duration_s", Integer, nullable=False),
    Column("alert_id", BigInteger().with_variant(Integer(), "sqlite"), nullable=True),
    Column("reason", String(16), nullable=False),  # on level renewal off operator test
    Column("by", String(120), nullable=True),  # the operator (token name); null: automatic
    Column("payload", JSON, nullable=False),  # exactly what is published, every time
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),  # publications so far
    Column("last_sent_at", UTCDateTime, nullable=True),
    # pending (awaiting its ack) -> acked | unanswered | superseded (a newer command replaced it)
    Column("status", String(12), nullable=False, server_default="pending"),
    Column("ack", JSON, nullable=True),  # {state, detail}
    Column("acked_at", UTCDateTime, nullable=True),
    Index("ix_siren_commands_status", "status"),
    Index("ix_siren_commands_siren", "siren_id", "created_at"),
)

# Where this deployment's own local services listen, for the local tools: the embedded MQTT
# broker of `ews run` (it takes another port when its own is taken; service/broker.py).
local_endpoints = Table(
    "local_endpoints",
    metadata,
    Column("name", String(32), primary_key=True),  # embedded_mqtt
    Column("url", String(200), nullable=False),
    Column("holder", String(128), nullable=False),  # instance id of the ews run that listens there
    Column("updated_at", UTCDateTime, nullable=False),
)

# Leadership for scheduled jobs when several instances share one database.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# The deployment's SMS rate (service/dispatch/shared_budget.py, PostgreSQL): the next free request
# slot, in seconds of the database's clock, moved one interval on by each reservation of any instance.
sms_budget = Table(
    "sms_budget",
    metadata,
    Column("name", String(32), primary_key=True),  # sms
    Column("next_slot", Float, nullable=False),
)
