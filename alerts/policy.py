"""The notification policy (spec sections 4 and 10): who is told of an alert event, how urgently, and in what words.

``decide(alert, event, station, rules)`` is the one place that answers it. It returns a
``Notice`` (the notification kind, the template key, the level the text names, the rank from
``alerts.priority``, and whether residents and staff are told), or None when the event tells
nobody. ``service.alerting`` asks it when it records an event (``dispatch='pending'`` when
there is a notice) and the outbox asks it again when it expands the event into
notifications; the outbox only executes the answer. ``notice_text`` renders a notice for one
language, with the words built here too (``message_context``).

To change who is told (maintenance, acknowledgement, upstream warnings, sirens ...), add the
fact to ``AlertFacts`` or ``StationFacts`` and the rule to ``decide``: callers pass facts,
never decisions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo

from alerts import messages, priority
from alerts.levels import Level
from alerts.rules import Rules
from alerts.upstream import all_clear_allowed, inhibited

# Notification kinds that carry a validity (EWS_SMS_VALIDITY_S): late, they would arrive after the flood.
EXPIRING_KINDS = ("warning", "reminder")
# A warning in one of these states reached (or may have reached) the provider: it earns its all-clear.
HANDED_OVER = ("spooled", "sent", "delivered", "unknown")
WAIT = "wait"  # fate of a row to put back for a moment: what it depends on is being sent right now
PUBLIC_KINDS = messages.PUBLIC_KINDS  # warnings to residents (and staff)
UPSTREAM = messages.UPSTREAM  # a wave from upstream (spec section 11): to residents (and staff), no reminders
OPERATIONAL_KINDS = messages.OPERATIONAL_KINDS  # staff only
EXERCISE_PREFIX = "LATIHAN "  # the start of every text of a drill
# What a broken template or an odd reading raises while rendering; ``fallback_text`` is sent instead.
RENDER_ERRORS = (messages.TemplateError, KeyError, ValueError, TypeError)


@dataclasses.dataclass(frozen=True)
class AlertFacts:
    """What the policy knows of the alert an event belongs to."""

    kind: str  # water_level, rainfall, offline, battery, siren (and upstream)
    peak: Level = Level.NORMAL  # the highest level of the episode so far
    exercise: bool = False  # a drill's alert, or any alert under EWS_EXERCISE
    drill_residents: bool = False  # the drill was started with residents: true
    # An upstream alert's station: the level of its own water-level alert (normal: none), and whether
    # any own public alert of it is active (they silence the wave's texts, spec section 11).
    own_level: Level = Level.NORMAL
    own_active: bool = False
    acknowledged: bool = False  # staff have seen it: their AWAS reminders stop


@dataclasses.dataclass(frozen=True)
class EventFacts:
    """One alert event as recorded: its type, level, time and the reading behind it."""

    type: str  # raised, escalated, deescalated, reminded, cleared, closed (by hand), acknowledged
    level: str
    at: datetime
    reading: Mapping | None = None

    @property
    def all_clear_asked(self) -> bool:
        """A ``closed`` event whose operator asked for the all-clear (``{"all_clear": true}``)."""
        return self.type == "closed" and bool((self.reading or {}).get("all_clear"))


@dataclasses.dataclass(frozen=True)
class StationFacts:
    """The station an alert is of: its registry row (name, river, areas, sms_name ...) and its service state."""

    station: Mapping
    maintenance: bool = False  # in a maintenance window: nothing reaches residents (spec section 10)


@dataclasses.dataclass(frozen=True)
class Notice:
    """The policy's answer for one event: what is sent, to whom, how urgently."""

    kind: str  # notification kind: warning, reminder, all_clear, operational
    template: str  # the template key (config/templates), exercise ones under ``exercise.``
    level: str  # the level the text names (``normal`` for an all-clear)
    priority: int  # alerts.priority rank, 0 first
    residents: bool  # residents of the station's areas are told
    staff: bool  # staff are told
    exercise: bool = False
    suppressed: bool = False  # residents would have been told, but the station is under maintenance
    maintenance: bool = False  # staff get the marked text of a maintenance window (never a wave's, never to residents)


# Alerts a station in a maintenance window does not raise at all (spec section 10): its silence and its
# supply are the repair crew's business (the other operational kinds are raised but tell nobody).
NOT_RAISED_IN_MAINTENANCE = ("offline", "battery")


def heeds_maintenance(*, drill: bool) -> bool:
    """Whether a maintenance window counts for an alert: a drill's (its own readings and texts) ignores it."""
    return not drill


def raises(kind: str, station: StationFacts) -> bool:
    """Whether an alert of ``kind`` is opened at ``station``: no offline or battery alert during a window."""
    return not (station.maintenance and kind in NOT_RAISED_IN_MAINTENANCE)


def battery_owed(rules: Rules, newest: Mapping | None, age_s: float | None) -> bool:
    """Whether a window's end owes staff the battery alert it held back: the newest voltage, still fresh, is below ``low``.

    During the window the engine judged the low voltage as always but no alert was opened; the
    engine stays at that level and raises nothing more, so without this a supply still failing
    after the repair would go unreported until it recovered and failed again.
    """
    if rules.battery is None or newest is None or age_s is None or age_s > rules.stale_after_s:
        return False  # no rule, never measured, or so old that the offline check speaks for the station
    return float(newest["value"]) < rules.battery.low


def decide(alert: AlertFacts, event: EventFacts, station: StationFacts, rules: Rules) -> Notice | None:
    """The notice for ``event`` of ``alert`` at ``station`` under ``rules``, or None when nobody is told."""
    plan = _plan(alert, event, rules)
    if plan is None:
        return None
    kind, key = plan
    if alert.exercise:  # LATIHAN texts of their own (config/templates: [exercise...])
        key = f"{messages.EXERCISE}.{key}"
    public = alert.kind in PUBLIC_KINDS or alert.kind == UPSTREAM
    # Exercises reach staff; residents only of a drill started with residents: true (never EWS_EXERCISE's).
    residents = public and (not alert.exercise or alert.drill_residents)
    level = Level.NORMAL.label if kind == "all_clear" else event.level
    if key.endswith("sensor.doubtful"):
        level = (event.reading or {}).get("would_be") or level  # the level the doubtful value would give
    staff = not (kind == "reminder" and alert.acknowledged)  # an acknowledgement stops the staff's reminders
    suppressed = repaired = False
    if station.maintenance and alert.kind != UPSTREAM:  # a wave from upstream is no reading of the repaired gauge
        if alert.kind in OPERATIONAL_KINDS:
            return None  # no offline or battery alerts from a station being repaired
        # Nothing to residents (recorded as suppressed); staff still hear of SIAGA and AWAS, marked: a
        # real flood during a repair must not go unnoticed.
        suppressed, residents = residents, False
        staff = repaired = staff and kind in EXPIRING_KINDS and Level.parse(event.level) >= Level.SIAGA
        if repaired:  # texts of their own that say residents were not told (config/templates: [maintenance...])
            key = f"{messages.MAINTENANCE}.{key}"
    if not (residents or staff or suppressed):
        return None
    return Notice(kind=kind, template=key, level=level,
                  priority=priority.priority(kind, event.level, exercise=alert.exercise),
                  residents=residents, staff=staff, exercise=alert.exercise, suppressed=suppressed,
                  maintenance=repaired)


def _plan(alert: AlertFacts, event: EventFacts, rules: Rules) -> tuple[str, str] | None:
    """(notification kind, template key) when the rules say ``event`` reaches people."""
    kind, type_ = alert.kind, event.type
    if kind == "sensor":
        return _sensor_plan(type_, event.reading or {})
    if kind in OPERATIONAL_KINDS:
        return ("operational", f"{kind}.{type_}") if type_ in ("raised", "cleared") else None
    if kind == UPSTREAM:
        return _upstream_plan(alert, event, rules)
    if kind not in PUBLIC_KINDS:
        return None
    if type_ == "announced" and event.level == Level.NORMAL.label:  # an all-clear a maintenance window held back
        return "all_clear", f"{kind}.all_clear"  # the outbox gives it only to those who got a warning of the alert
    if type_ in ("raised", "escalated", "announced"):  # announced: at the end of a maintenance window
        if event.level in messages.WARNING_LEVELS and Level.parse(event.level) >= rules.notify_from:
            return "warning", f"{kind}.{'raised' if type_ == 'announced' else type_}.{event.level}"
        return None
    if type_ == "reminded":
        return ("reminder", f"{kind}.reminder") if Level.parse(event.level) >= rules.notify_from else None
    if type_ == "cleared":
        return ("all_clear", f"{kind}.all_clear") if rules.all_clear and alert.peak >= rules.notify_from else None
    if type_ == "closed":  # by hand: closing a stuck alert must not tell people it is safe, unless asked
        return ("all_clear", f"{kind}.all_clear") if event.all_clear_asked else None
    return None  # deescalated, acknowledged


def _upstream_plan(alert: AlertFacts, event: EventFacts, rules: Rules) -> tuple[str, str] | None:
    """A wave from upstream: its warnings unless the station's own alert already says as much; its all-clear
    only while no own alert of the station is active. No reminders: the station's own gauge takes over."""
    if event.type in ("raised", "escalated"):
        level = Level.parse(event.level)
        if event.level in messages.WARNING_LEVELS and level >= rules.notify_from and not inhibited(level, alert.own_level):
            return "warning", f"{UPSTREAM}.{event.type}.{event.level}"
        return None
    if event.type == "closed" and not (event.reading or {}).get("all_clear"):
        return None  # its source closed by hand: nobody is told it is safe unless the operator asked
    if event.type in ("cleared", "closed") and rules.all_clear and alert.peak >= rules.notify_from \
            and all_clear_allowed(own_active=alert.own_active):
        return "all_clear", f"{UPSTREAM}.all_clear"
    return None


def reminder_due(last_notified_at: datetime | None, reading_ts: datetime | None, now: datetime, rules: Rules) -> bool:
    """An AWAS alert's reminder is due: ``repeat_awas_s`` since its last message, from a reading younger than ``stale_after_s``.

    A station silent at AWAS keeps its alert open, but nobody is reminded from its old value.
    """
    if rules.repeat_awas_s <= 0:
        return False
    if last_notified_at is not None and now - last_notified_at < timedelta(seconds=rules.repeat_awas_s):
        return False
    return reading_ts is not None and now - reading_ts < timedelta(seconds=rules.stale_after_s)


def _sensor_plan(type_: str, reading: Mapping) -> tuple[str, str] | None:
    """Data quality (spec section 17): a doubtful value is told once, when it comes; a stuck sensor and its end."""
    if type_ == "raised":
        return "operational", "sensor.doubtful" if reading.get("quality") == "doubtful" else "sensor.raised"
    if type_ == "cleared" and reading.get("ended") == "flatline":
        return "operational", "sensor.cleared"
    return None  # a doubtful value decided by the next sample: staff were told already


# --- is it still worth sending --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Queued:
    """A notification waiting to be handed to the provider, and its alert as it is now."""

    kind: str  # warning, reminder, all_clear, operational, broadcast, reply
    level: str | None = None  # the level of the event it tells of
    valid_until: datetime | None = None
    alert_state: str | None = None  # active or closed; None: not of an alert
    alert_level: str | None = None
    warnings: tuple[str, ...] | None = None  # all-clear: the states of this subscriber's warnings of the alert


def valid_until(kind: str, created_at: datetime, validity_s: float) -> datetime | None:
    """When a notification of ``kind`` created at ``created_at`` stops being worth sending; None: never."""
    return created_at + timedelta(seconds=validity_s) if kind in EXPIRING_KINDS else None


def fate(queued: Queued, now: datetime) -> str | None:
    """None to send ``queued`` now; ``expired`` or ``superseded`` when it must not go out (spec section 10); ``WAIT`` to ask again."""
    if queued.valid_until is not None and now > queued.valid_until:
        return "expired"
    if queued.alert_state is None:
        return None
    if queued.kind in EXPIRING_KINDS and queued.alert_state != "active":
        return "superseded"  # the alert closed: its all-clear follows
    if queued.kind == "warning" and Level.parse(queued.alert_level or "normal") > Level.parse(queued.level or "normal"):
        return "superseded"  # a warning of the higher level is queued after it
    if queued.kind == "all_clear" and queued.warnings is not None:
        if "sending" in queued.warnings:
            return WAIT  # a warning is being handed over right now: its outcome decides
        if not _warned(queued):
            return "superseded"  # an all-clear goes only to those who got a warning
    return None


def _warned(queued: Queued) -> bool:
    """A warning of the alert was handed over, or (the alert still open) is queued and will be."""
    still_going = ("pending", "sending") if queued.alert_state == "active" else ()
    return any(state in HANDED_OVER or state in still_going for state in queued.warnings or ())


# --- the words -----------------------------------------------------------------------------------


def notice_text(templates: messages.Templates, language: str, notice: Notice, alert: AlertFacts, event: EventFacts,
                station: StationFacts, rules: Rules, zone: tzinfo) -> str:
    """The SMS of ``notice`` in ``language`` (raises ``RENDER_ERRORS``: the caller then sends ``fallback_text``)."""
    context = message_context(templates, language, alert.kind, notice.level, event, station, rules, zone)
    return messages.render(templates, notice.template, language, context)


def fallback_text(alert: AlertFacts, event: EventFacts, station: StationFacts) -> str:
    """The plain text sent when a template cannot be rendered: level, kind, station, 112."""
    name = station.station.get("name") or station.station.get("id")
    body = f"BPBD LUTIM: {str(event.level).upper()} {alert.kind} {name}. Darurat: 112"
    return EXERCISE_PREFIX + body if alert.exercise else body


def message_context(templates: messages.Templates, language: str, kind: str, level: str, event: EventFacts,
                    station: StationFacts, rules: Rules, zone: tzinfo) -> dict:
    """The template context for one event of a ``kind`` alert, naming ``level``, in ``language``."""
    reading = event.reading or {}
    if kind == UPSTREAM:
        return messages.upstream_context(templates, language, station=station.station, level=level, reading=reading,
                                         at=event.at, zone=zone)
    metric, value, rate, window = kind, reading.get("value"), None, None
    if kind == "water_level":
        rate = reading.get("rate_per_hour")
    elif kind == "rainfall":
        window, value = rain_window(reading, rules, level if level != Level.NORMAL.label else Level.WASPADA.label)
        rate = rain_rate(reading)
    elif kind == "sensor":
        metric = "water_level"  # data quality of the water level: its value in metres
    elif kind in ("offline", "siren"):
        value = None
    return messages.warning_context(
        templates, language, station=station.station, level=level, metric=metric, value=value,
        at=_when(kind, event), zone=zone, rate_per_hour=rate, window=window,
        siren=reading.get("siren_id") if kind == "siren" else None,
        problem=reading.get("problem") if kind == "siren" else None,
        was=reading.get("level") if kind == "offline" else None,
    )


def _when(kind: str, event: EventFacts) -> datetime:
    """The time a text names: the event's; a reminder's or announcement's reading's; ``offline``'s last time heard."""
    stamp = (event.reading or {}).get("last_seen") or (event.reading or {}).get("ts")
    # A stored value must never be stamped with the time it is sent (a gauge silent since may be far lower now).
    if not (kind == "offline" or event.type in ("reminded", "announced")) or not stamp:
        return event.at
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return event.at


def rain_window(reading: Mapping, rules: Rules, level: str) -> tuple[str | None, float | None]:
    """The rainfall window that matters most for ``level`` (highest sum/threshold), and its sum."""
    sums = reading.get("sums") or {}
    if not sums:
        return reading.get("window"), reading.get("value")
    best, best_ratio = None, -1.0
    for window, total in sums.items():
        threshold = _rain_threshold(rules, window, level)
        ratio = (float(total) / float(threshold)) if threshold else -0.5
        if ratio > best_ratio:
            best, best_ratio = window, ratio
    if best_ratio < 0:  # no thresholds known: the hourly sum is what people understand
        best = "1h" if "1h" in sums else best
    return best, sums.get(best)


def _rain_threshold(rules: Rules, window: str, level: str) -> float | None:
    rule = rules.rainfall.window(window) if rules.rainfall is not None else None
    return None if rule is None else rule.threshold(Level.parse(level))


def rain_rate(reading: Mapping) -> float | None:
    """The change of the hourly rain: last hour minus the mean of the two hours before."""
    sums = reading.get("sums") or {}
    if "1h" in sums and "3h" in sums:
        return float(sums["1h"]) - (float(sums["3h"]) - float(sums["1h"])) / 2
    return None
