"""Settings and the data an operator may change without touching code.

Data files live beside this module: ``seed/`` (bundled stations), ``rules/``
(default thresholds), ``templates/`` (SMS texts), ``scenarios/`` (simulator),
``mosquitto.conf`` (production broker) and ``example.env`` (every setting).
"""

from __future__ import annotations

import json
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent


def data_path(*parts: str) -> Path:
    """Return the path of a bundled data file, e.g. ``data_path("seed", "luwu-timur.json")``."""
    return DATA_DIR.joinpath(*parts)


def load_json(*parts: str):
    """Load a bundled JSON data file."""
    with data_path(*parts).open(encoding="utf-8") as handle:
        return json.load(handle)
