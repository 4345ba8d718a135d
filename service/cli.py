"""The ``ews`` command: one subcommand per entry point (spec section 8).

Each subcommand lives in its own module, which provides ``configure_parser(parser)``
and ``command(args) -> int``; modules are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from config.settings import ConfigError

# name -> (module, one-line help)
COMMANDS = {
    "run": ("service.runtime", "run the whole service: MQTT ingest, rules, scheduler, SMS dispatch, API and dashboard"),
    "db": ("service.db.migrate", "database migrations (ews db upgrade)"),
    "token": ("service.tokens", "API tokens (ews token create --role ROLE --name NAME)"),
    "broker": ("service.broker_acl", "the MQTT broker's access list (ews broker acl)"),
    "dead-letters": ("service.replay", "rejected payloads (ews dead-letters replay [--station ID] [--reason REASON])"),
    "simulate": ("sensors.simulator", "publish a realistic scenario from simulated gateways"),
    "gateway": ("sensors.gateway", "store-and-forward gateway agent for a field station"),
    "bench": ("service.bench", "the performance benchmark"),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="ews", description="EWS Luwu Timur: flood and heavy-rain early warning")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        module = _load(module_name)
        if module is not None:
            module.configure_parser(sub_parser)
    return parser


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    """Run the ``ews`` command line; return the exit status."""
    args = build_parser().parse_args(argv)
    module = _load(args._module)
    if module is None:
        print(f"ews {args.command}: not available in this build", file=sys.stderr)
        return 2
    # ews simulate and ews gateway (sensors/, which never imports the service) find the embedded
    # broker of an `ews run` on the same database through this, whatever port it took.
    args.recorded_broker_url = _recorded_broker_url
    try:
        return int(module.command(args) or 0)
    except ConfigError as exc:
        # Every command reads the same settings: a wrong one is one line, whichever command met it.
        print(f"ews: {exc}", file=sys.stderr)
        return 2


def _recorded_broker_url() -> str | None:
    from service.broker import recorded_broker_url

    return recorded_broker_url(os.environ)


if __name__ == "__main__":
    sys.exit(main())
