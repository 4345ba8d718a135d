"""``ews broker acl``: the Mosquitto ``acl_file`` built from the registry (spec section 9).

The broker enforces on MQTT what the API enforces on HTTP: each gateway token's name is an MQTT
user that may write only the readings, status, exercise and backlog topics of its stations; the
service's own MQTT user(s) read those and command the sirens; each siren's user (its id) reads its
own command topic and writes its own ack topic. Passwords stay with ``mosquitto_passwd``.

``build_acl`` is pure: the users in, the file's text out. The sirens are an input: every siren
listed in a station's ``sirens`` (``registry_sirens``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from alerts.errors import UsageError
from alerts.times import rfc3339
from config.settings import load_settings
from sensors import topics
from service.db import schema
from service.sirens.state import siren_owners

USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")  # what we write after "user " (no spaces, no newlines)


@dataclasses.dataclass(frozen=True)
class GatewayUser:
    """An MQTT user of the field: a gateway token's name and the stations it may write."""

    name: str
    stations: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Siren:
    """A siren's MQTT user is its id; ``station_id`` is where it stands (for the comment)."""

    id: str
    station_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Acl:
    """The ``acl_file`` text and what an operator should know about it."""

    text: str
    users: tuple[str, ...]
    warnings: tuple[str, ...]


def gateway_topics(prefix: str, station_id: str) -> list[str]:
    """What a gateway may write for one of its stations (spec sections 1, 9, 10 and 16)."""
    return [topics.readings_topic(prefix, station_id), topics.status_topic(prefix, station_id),
            topics.exercise_readings_topic(prefix, station_id), topics.backlog_topic(prefix, station_id)]


BACKLOG_SUFFIX = "-backlog"  # service.mqtt_ingest.backlog_session: the service's user with this suffix


def service_rules(prefix: str) -> list[str]:
    """What the service's own user may do: read every gateway topic, command the sirens, read their acks."""
    p = topics.normalize_prefix(prefix)
    return [f"topic read {topics.readings_subscription(p)}", f"topic read {topics.status_subscription(p)}",
            f"topic read {topics.exercise_readings_subscription(p)}", f"topic read {p}/stations/+/backlog",
            f"topic write {topics.siren_command_subscription(p)}", f"topic read {topics.siren_ack_subscription(p)}"]


def build_acl(prefix: str, service_users: Sequence[str], gateways: Iterable[GatewayUser],
              sirens: Iterable[Siren] = (), *, generated_at: datetime | None = None) -> Acl:
    """The Mosquitto acl_file for these users; a user that cannot be written safely is left out, with a warning."""
    warnings: list[str] = []
    taken: dict[str, str] = {}
    sections: list[list[str]] = []

    def claim(name: str, what: str) -> bool:
        if not USER_RE.match(name):
            warnings.append(f"{what} {name!r}: not a usable MQTT user name; left out")
            return False
        if name in taken:
            warnings.append(f"{what} {name!r}: the name is already the {taken[name]}'s MQTT user; left out")
            return False
        taken[name] = what
        return True

    for user in service_users:
        if claim(user, "service"):
            sections.append(["# the service (EWS_MQTT_URL): reads the gateways, commands the sirens",
                             f"user {user}", *service_rules(prefix)])
        if claim(f"{user}{BACKLOG_SUFFIX}", "service's backlog session"):
            sections.append(["# the service's backlog session (spec section 16): reads the backlog flushes",
                             f"user {user}{BACKLOG_SUFFIX}", f"topic read {topics.backlog_subscription(prefix)}"])
    for gateway in sorted(gateways, key=lambda g: g.name):
        if not claim(gateway.name, "gateway"):
            continue
        if not gateway.stations:
            warnings.append(f"gateway {gateway.name!r} has no station yet: it may publish nothing")
        lines = [f"# gateway: {', '.join(gateway.stations) or 'no station yet'}", f"user {gateway.name}"]
        lines += [f"topic write {topic}" for station in gateway.stations for topic in gateway_topics(prefix, station)]
        sections.append(lines)
    for siren in sorted(sirens, key=lambda s: s.id):
        if claim(siren.id, "siren"):
            p = topics.normalize_prefix(prefix)
            sections.append([f"# siren at {siren.station_id or 'an unknown station'}", f"user {siren.id}",
                             f"topic read {topics.siren_command_topic(p, siren.id)}",
                             f"topic write {topics.siren_ack_topic(p, siren.id)}"])
    if not service_users:
        warnings.append("no service user: the service could read nothing")
    stamp = rfc3339(generated_at or datetime.now(timezone.utc), whole_seconds=True)
    header = [f"# Mosquitto acl_file for EWS Luwu Timur, written by `ews broker acl` at {stamp}.",
              "# Generated from the registry: do not edit; regenerate after creating or revoking a gateway",
              "# token, then reload the broker (kill -HUP, docs/deploy.md). Users without a section may do nothing."]
    text = "\n".join(header + [""] + ["\n".join(lines) + "\n" for lines in sections])
    return Acl(text=text.rstrip("\n") + "\n", users=tuple(taken), warnings=tuple(warnings))


def registry_gateways(conn) -> list[GatewayUser]:
    """Every active gateway token's MQTT user with its stations (tokens sharing a name: the union)."""
    t = schema.api_tokens
    rows = conn.execute(sa.select(t.c.name, t.c.stations).where(t.c.role == "gateway", t.c.revoked_at.is_(None))
                        .order_by(t.c.id)).all()
    stations: dict[str, dict[str, None]] = {}
    for row in rows:
        stations.setdefault(row.name, {}).update(dict.fromkeys(row.stations or []))
    return [GatewayUser(name, tuple(owned)) for name, owned in stations.items()]


def registry_sirens(conn) -> list[Siren]:
    """The registry's sirens (``stations.sirens``): each one's MQTT user is its id."""
    return [Siren(siren_id, station_id) for siren_id, station_id in siren_owners(conn).items()]


def password_file_users(path: Path) -> list[str]:
    """The user names of a ``mosquitto_passwd`` file (``user:hash`` lines)."""
    return [line.split(":", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#") and ":" in line]


def compare_with_password_file(acl: Acl, users: Sequence[str]) -> list[str]:
    """Warnings for users the broker lets in but the ACL gives nothing, and the other way round."""
    granted = set(acl.users)
    found = [f"password file user {u!r} has no section in the ACL: it may publish and read nothing"
             for u in users if u not in granted]
    found += [f"ACL user {u!r} has no password yet: mosquitto_passwd FILE {u}" for u in acl.users if u not in set(users)]
    return found


# -- ews broker acl -----------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``ews broker acl``."""
    sub = parser.add_subparsers(dest="broker_command", metavar="ACTION", required=True)
    acl = sub.add_parser("acl", help="print the Mosquitto acl_file built from the registry",
                         description="Print (or write) the Mosquitto acl_file: one section for the service's MQTT "
                                     "user(s), one per active gateway token (its name, its stations' topics), one "
                                     "per siren. Regenerate after creating or revoking a gateway token, then "
                                     "reload Mosquitto with SIGHUP (docs/deploy.md).")
    acl.add_argument("--service-user", action="append", default=[], metavar="NAME", dest="service_users",
                     help="the service's MQTT user (repeat: one per instance); default: the user of EWS_MQTT_URL")
    acl.add_argument("--output", metavar="FILE", type=Path,
                     help="write the file (atomically) instead of printing it")
    acl.add_argument("--passwd", metavar="FILE", type=Path,
                     help="the broker's password file: warn about users the ACL and the file do not share")


def _write_atomically(path: Path, text: str) -> None:
    # The broker may reload at any moment: it must never read half a file.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def command(args: argparse.Namespace) -> int:
    """Run ``ews broker acl`` on the database ``args.open_database()`` opens (service/cli.py)."""
    settings = load_settings(os.environ)  # a ConfigError is printed as one line by service.cli
    users = args.service_users or ([settings.mqtt.username] if settings.mqtt and settings.mqtt.username else [])
    if not users:
        raise UsageError("acl: name the service's MQTT user: EWS_MQTT_URL=mqtt://USER:PASSWORD@HOST:1883, "
                         "or --service-user NAME (once per instance)")  # printed as one line by service.cli
    engine = args.open_database()
    try:
        with engine.connect() as conn:
            acl = build_acl(settings.mqtt_topic_prefix, users, registry_gateways(conn), registry_sirens(conn))
    finally:
        engine.dispose()
    warnings = list(acl.warnings)
    if args.passwd:
        warnings += compare_with_password_file(acl, password_file_users(args.passwd))
    for warning in warnings:
        print(f"ews broker acl: warning: {warning}", file=sys.stderr)
    if args.output:
        _write_atomically(args.output, acl.text)
        print(f"ews broker acl: wrote {args.output} ({len(acl.users)} users); reload the broker: "
              "kill -HUP $(pidof mosquitto)", file=sys.stderr)
    else:
        sys.stdout.write(acl.text)
    return 0
