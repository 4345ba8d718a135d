"""A station's rules as the service reads them: the bundled defaults and each station's stored document.

The pure half (what a whole document is, PUT and PATCH) is ``alerts.station_rules``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

from alerts.rules import Rules, RulesError, parse_rules, rules_to_doc
from alerts.station_rules import effective_rules
from config import load_json

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def default_rules_doc() -> dict:
    """config/rules/defaults.json (read once)."""
    return load_json("rules", "defaults.json")


def new_station_rules_doc() -> dict:
    """The rules a new station starts with when none are given: the defaults, in canonical form."""
    defaults = default_rules_doc()
    return rules_to_doc(effective_rules(defaults, {k: v for k, v in defaults.items() if not k.startswith("_")}))


def station_rules(station: Mapping) -> Rules:
    """The effective rules of ``station``: its stored (whole) document.

    A stored document that no longer validates (written by hand, or by an older version)
    must not stop ingestion: the station then runs on the defaults, and we say so.
    """
    try:
        return effective_rules(default_rules_doc(), station.get("rules") or {})
    except RulesError as exc:
        log.error("station %s: stored rules are invalid (%s); using the defaults", station.get("id"), exc)
        return parse_rules(new_station_rules_doc())
