"""The national four-level warning scale (BNPB): normal < waspada < siaga < awas."""

from __future__ import annotations

import enum


class Level(enum.IntEnum):
    """A warning level; ordered so that ``max()`` picks the most severe."""

    NORMAL = 0
    WASPADA = 1
    SIAGA = 2
    AWAS = 3

    @classmethod
    def parse(cls, name: str) -> "Level":
        """Return the level named ``name`` (case-insensitive); raise ValueError otherwise."""
        try:
            return cls[str(name).strip().upper()]
        except KeyError:
            raise ValueError(f"unknown level {name!r}; use one of {', '.join(LEVEL_NAMES)}") from None

    @property
    def label(self) -> str:
        """The wire name: ``normal``, ``waspada``, ``siaga`` or ``awas``."""
        return self.name.lower()


LEVEL_NAMES = tuple(level.label for level in Level)
WARNING_LEVELS = (Level.WASPADA, Level.SIAGA, Level.AWAS)


def change_type(old: int, new: int) -> str:
    """The name of a change from level ``old`` to level ``new``: raised, escalated, deescalated or cleared."""
    if old == 0:
        return "raised"
    if new == 0:
        return "cleared"
    return "escalated" if new > old else "deescalated"
