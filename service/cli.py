"""The ``ews`` command: one subcommand per entry point (spec section 8).

Each subcommand lives in its own module, which provides ``configure_parser(parser)``
and ``command(args) -> int``; ``COMMANDS`` names the module of each, imported plainly
at the top (a module that fails to import is an error, never a missing command).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Mapping

from sqlalchemy.engine import Engine

from alerts.errors import ConfigError, EwsError, StartupError
from config.settings import load_settings
from sensors import gateway, simulator
from service import bench, broker, broker_acl, replay, runtime, tokens
from service.bootstrap import open_database
from service.db import migrate
from service.sirens.state import siren_owners

# name -> one-line help; the module of each is in _modules()
COMMANDS = {
    "run": "run the whole service: MQTT ingest, rules, scheduler, SMS dispatch, API and dashboard",
    "db": "database migrations (ews db upgrade)",
    "token": "API tokens (ews token create --role ROLE --name NAME)",
    "broker": "the MQTT broker's access list (ews broker acl)",
    "dead-letters": "rejected payloads (ews dead-letters replay [--station ID] [--reason REASON])",
    "simulate": "publish a realistic scenario from simulated gateways",
    "gateway": "store-and-forward gateway agent for a field station",
    "bench": "the performance benchmark",
}


def _modules() -> dict:
    """The module of each subcommand."""
    return {"run": runtime, "db": migrate, "token": tokens, "broker": broker_acl, "dead-letters": replay,
            "simulate": simulator, "gateway": gateway, "bench": bench}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="ews", description="EWS Luwu Timur: flood and heavy-rain early warning")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _modules().items():
        sub_parser = sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])
        sub_parser.set_defaults(_module=module)
        module.configure_parser(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``ews`` command line; return the exit status."""
    args = build_parser().parse_args(argv)
    module = args._module
    # ews simulate and ews gateway (sensors/, which never imports the service) find the embedded
    # broker of an `ews run` on the same database through this, whatever port it took.
    args.recorded_broker_url = functools.partial(recorded_broker_url, os.environ)
    args.registry_sirens = _registry_sirens  # ews simulate --sirens: the registry's siren ids
    # The commands on the database get their engine from here: the one way it is made (service/bootstrap.py).
    args.open_database = environment_database
    try:
        return int(module.command(args) or 0)
    except EwsError as exc:
        return report(exc, args.command)


def report(exc: EwsError, command: str) -> int:
    """Print ``exc`` as one line on stderr and return its exit status: the one place a CLI error is printed."""
    # Every command reads the same settings and ews run's start-up: those say just "ews:".
    where = "ews" if isinstance(exc, (ConfigError, StartupError)) else f"ews {command}"
    print(f"{where}: {exc}", file=sys.stderr)
    return exc.exit_status


def environment_database() -> Engine:
    """The engine of the environment's database (a ConfigError is printed as one line by ``report``)."""
    return open_database(load_settings(os.environ))


def recorded_broker_url(environ: Mapping[str, str]) -> str | None:
    """Where ``ews run`` on the database of ``environ`` runs its embedded broker, or None.

    None also when ``EWS_MQTT_URL`` is set, the settings are wrong (the tool then uses its
    default), the SQLite file does not exist (never create one here) or nothing was recorded.
    """
    try:
        settings = load_settings(environ)
    except ConfigError:
        return None
    if not broker.may_have_recorded(settings):
        return None
    engine = open_database(settings, connect_timeout_s=5)  # asked in passing: a silent database has nothing
    try:
        return broker.recorded_broker_url(engine)
    finally:
        engine.dispose()


def _registry_sirens() -> list[str]:
    engine = environment_database()
    try:
        with engine.connect() as conn:
            return sorted(siren_owners(conn))
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
