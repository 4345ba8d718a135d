"""The ``ews`` command: one subcommand per entry point (spec section 8).

Each subcommand lives in its own module, which provides ``configure_parser(parser)``
and ``command(args) -> int``; ``COMMANDS`` names the module of each, imported explicitly
when the parser is built (a module that fails to import is an error, never a missing command).
"""

from __future__ import annotations

import argparse
import os
import sys

from alerts.errors import ConfigError, EwsError, StartupError

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
    """The module of each subcommand (imported here, not at the top: ``ews`` must start fast and lean)."""
    from sensors import gateway, simulator
    from service import bench, broker_acl, replay, runtime, tokens
    from service.db import migrate

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
    args.recorded_broker_url = _recorded_broker_url
    args.registry_sirens = _registry_sirens  # ews simulate --sirens: the registry's siren ids
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


def _recorded_broker_url() -> str | None:
    from service.broker import recorded_broker_url

    return recorded_broker_url(os.environ)


def _registry_sirens() -> list[str]:
    from config.settings import load_settings
    from service.bootstrap import open_database
    from service.sirens.state import siren_owners

    engine = open_database(load_settings(os.environ))
    try:
        with engine.connect() as conn:
            return sorted(siren_owners(conn))
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
