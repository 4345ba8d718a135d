"""Sirens (spec section 12): what a siren must be told, and when, as pure decisions.

A station lists its sirens (``{"id", "at", "upstream", "duration_s"}``). From the station's open
alerts this module decides what the siren should do (``want``), whether a command must go out now
(a first ``on``, an ``on`` at a new level, a renewal before ``duration_s`` runs out, an ``off``),
when an unanswered command is published again (same ``command_id``, every ``ack_timeout_s``, at
most ``MAX_RESENDS`` times) and when it counts as unanswered. The service (``service/sirens.py``)
stores and publishes; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from alerts.levels import Level

SIREN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ACTIONS = ("on", "off", "test")
ACK_STATES = ("on", "off", "error")
STATES = ("on", "off", "unknown", "error")  # what GET /sirens shows: the last acknowledged state
MAX_RESENDS = 3  # an unanswered command is published again at most this often
DEFAULT_DURATION_S = 600
MIN_DURATION_S, MAX_DURATION_S = 10, 3600
DEFAULT_TEST_DURATION_S = 10
SOUNDING_LEVELS = ("waspada", "siaga", "awas")


@dataclasses.dataclass(frozen=True)
class SirenConfig:
    """One siren of a station, as its ``sirens`` list names it."""

    id: str
    station_id: str
    at: Level = Level.AWAS
    upstream: bool = False  # also sound for the station's upstream alert (spec section 11)
    duration_s: int = DEFAULT_DURATION_S


@dataclasses.dataclass(frozen=True)
class AlertView:
    """An open alert of the siren's station that may sound it: its id and level now."""

    id: int
    level: Level
    kind: str = "water_level"


@dataclasses.dataclass(frozen=True)
class Want:
    """What the siren should do now: ``on`` at ``level`` for alert ``alert_id``, or ``off``."""

    action: str
    level: Level | None = None
    alert_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Commanded:
    """The last on/off the service issued for the siren (automatic or an operator's)."""

    action: str
    level: str | None
    alert_id: int | None
    on_until: datetime | None = None  # when the siren stops by itself (sent + duration_s)


@dataclasses.dataclass(frozen=True)
class Override:
    """An operator's on/off: it wins until the level (or the alert) the siren follows changes."""

    action: str
    level: str | None
    alert_id: int | None


@dataclasses.dataclass(frozen=True)
class Command:
    """A command to publish on ``{prefix}/sirens/{siren_id}/command``."""

    siren_id: str
    action: str
    level: str | None
    duration_s: int
    alert_id: int | None
    reason: str  # on, level, renewal, off, operator, test


def parse_siren(doc: Mapping, station_id: str) -> SirenConfig:
    """A siren from its stored document (already validated by the API)."""
    return SirenConfig(id=str(doc["id"]), station_id=station_id, at=Level.parse(doc.get("at") or "awas"),
                       upstream=bool(doc.get("upstream", False)),
                       duration_s=int(doc.get("duration_s") or DEFAULT_DURATION_S))


def siren_problems(sirens: Sequence[Mapping], station_id: str | None,
                   taken: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``[(field, message)]`` for a station's ``sirens`` list: duplicate ids, ids another station holds."""
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, siren in enumerate(sirens):
        sid = siren.get("id")
        if sid in seen:
            problems.append((f"sirens.{i}.id", f"{sid!r} is listed twice"))
        seen.add(sid)
        owner = (taken or {}).get(sid)
        if owner is not None and owner != station_id:
            problems.append((f"sirens.{i}.id", f"{sid!r} is already a siren of station {owner}"))
    return problems


def want(config: SirenConfig, alerts: Sequence[AlertView], *, automatic: bool = True) -> Want:
    """What the siren should do for these open alerts of its station (``automatic`` False: stay off).

    Its ``water_level`` alert counts, and its ``upstream`` alert when the siren says
    ``upstream: true``; the highest of them decides. ``off`` names the alert it follows (if any),
    so an operator's override knows what it was given for.
    """
    counted = [a for a in alerts if a.kind == "water_level" or (config.upstream and a.kind == "upstream")]
    top = max(counted, key=lambda a: (a.level, a.kind == "water_level"), default=None)
    if top is None:
        return Want("off")
    if automatic and top.level >= config.at:
        return Want("on", top.level, top.id)
    return Want("off", top.level, top.id)


def override_holds(override: Override | None, now_want: Want) -> bool:
    """An operator's command wins until the siren's alert or its level next changes."""
    if override is None:
        return False
    level = None if now_want.level is None else now_want.level.label
    return override.alert_id == now_want.alert_id and override.level == level


def renew_lead_s(duration_s: int, ack_timeout_s: float) -> float:
    """How long before ``on`` runs out it is renewed: time for every re-send, at most half the duration."""
    return min(duration_s / 2, (MAX_RESENDS + 1) * ack_timeout_s)


def renewal_at(commanded: Commanded | None, duration_s: int, ack_timeout_s: float) -> datetime | None:
    """When the running automatic ``on`` must be renewed (None: nothing to renew)."""
    if commanded is None or commanded.action != "on" or commanded.on_until is None:
        return None
    return commanded.on_until - timedelta(seconds=renew_lead_s(duration_s, ack_timeout_s))


def next_command(config: SirenConfig, now_want: Want, commanded: Commanded | None, override: Override | None,
                 now: datetime, ack_timeout_s: float) -> Command | None:
    """The automatic command the siren needs now, or None (an operator's override holds, or all is said)."""
    if override_holds(override, now_want):
        return None
    if now_want.action == "on":
        level = now_want.level.label
        if commanded is None or commanded.action != "on":
            return Command(config.id, "on", level, config.duration_s, now_want.alert_id, "on")
        if commanded.level != level or commanded.alert_id != now_want.alert_id:
            return Command(config.id, "on", level, config.duration_s, now_want.alert_id, "level")
        due = renewal_at(commanded, config.duration_s, ack_timeout_s)
        if due is not None and now >= due:
            return Command(config.id, "on", level, config.duration_s, now_want.alert_id, "renewal")
        return None
    if commanded is not None and commanded.action == "on":
        # Switch off what we switched on (also an operator's on once its override ended).
        level = None if now_want.level is None else now_want.level.label
        return Command(config.id, "off", level, 0, now_want.alert_id or commanded.alert_id, "off")
    return None


def after_command(command: Command, sent_at: datetime) -> Commanded | None:
    """What the siren was last told once ``command`` goes out (a test changes nothing)."""
    if command.action == "test":
        return None
    on_until = sent_at + timedelta(seconds=command.duration_s) if command.action == "on" else None
    return Commanded(command.action, command.level, command.alert_id, on_until)


def expires_at(sent_at: datetime, ack_timeout_s: float) -> datetime:
    """A command's ``expires_at``: when the service stops publishing it again (a later copy is stale)."""
    return sent_at + timedelta(seconds=(MAX_RESENDS + 1) * ack_timeout_s)


def resend_step(attempts: int, last_sent_at: datetime | None, now: datetime, ack_timeout_s: float) -> str | None:
    """For an unanswered command: ``send`` (first or again), ``unanswered`` (give up), or None (wait)."""
    if attempts == 0 or last_sent_at is None:
        return "send"
    if now < last_sent_at + timedelta(seconds=ack_timeout_s):
        return None
    return "send" if attempts <= MAX_RESENDS else "unanswered"


def due_at(attempts: int, last_sent_at: datetime | None, ack_timeout_s: float) -> datetime | None:
    """When an unanswered command next needs attention (None: now)."""
    if attempts == 0 or last_sent_at is None:
        return None
    return last_sent_at + timedelta(seconds=ack_timeout_s)


def payload(command_id: str, command: Command, sent_at: datetime, expires: datetime) -> dict:
    """The JSON a controller receives (spec section 12); ``level`` is null for an ``off`` without alert."""
    return {"command_id": command_id, "action": command.action, "level": command.level,
            "duration_s": command.duration_s, "alert_id": command.alert_id,
            "sent_at": _iso(sent_at), "expires_at": _iso(expires)}


def parse_ack(doc) -> tuple[dict | None, str | None]:
    """A controller's ack as ``{command_id, state, detail}``, or (None, why it is refused)."""
    if not isinstance(doc, dict):
        return None, "not_an_object"
    command_id, state = doc.get("command_id"), doc.get("state")
    if not isinstance(command_id, str) or not 1 <= len(command_id) <= 64:
        return None, "bad_ack: command_id must be the command's id (a string)"
    if state not in ACK_STATES:
        return None, f"bad_ack: state must be one of {', '.join(ACK_STATES)}"
    detail = doc.get("detail")
    detail = "" if detail is None else str(detail)[:500]
    return {"command_id": command_id, "state": state, "detail": detail}, None


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="seconds").replace("+00:00", "Z")
