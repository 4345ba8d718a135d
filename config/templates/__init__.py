"""The SMS templates shipped with the service: ``id.toml`` (Bahasa Indonesia) and ``en.toml``."""

from __future__ import annotations

import functools
from pathlib import Path

from alerts.messages import Templates, load_templates

TEMPLATE_DIR = Path(__file__).parent


@functools.lru_cache(maxsize=1)
def default_templates() -> Templates:
    """The bundled templates (parsed once per process)."""
    return load_templates(TEMPLATE_DIR)
