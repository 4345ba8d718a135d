"""Which SMS goes first (spec section 10, "Urgent first"): one pure function for every queue.

``priority(kind, level, exercise=...)`` ranks a notification, 0 the most urgent:

====  =====================================================================
rank  what
====  =====================================================================
0     a warning at AWAS
1     a warning at SIAGA
2     a warning at WASPADA (or a warning whose level is not known)
3     an AWAS reminder or an all-clear
4     a reply to a resident's SMS (BERHENTI, DAFTAR, INFO ...)
5     an operator's broadcast
6     a staff operational message (station offline, low battery)
7     anything of an exercise (drill): practice never delays a real message
====  =====================================================================

Within one rank, older messages go first (the caller orders by creation). The rank is
stored on each notification when it is created (``notifications.priority``); the Gammu
provider turns it into the outbox file's priority letter (``A`` for 0), so the modem's
queue keeps the same order. The spec is silent on replies: a resident waiting for the
answer to INFO comes after every warning but before a broadcast to thousands.
"""

from __future__ import annotations

WARNING_RANKS = {"awas": 0, "siaga": 1, "waspada": 2}
KIND_RANKS = {"reminder": 3, "all_clear": 3, "reply": 4, "broadcast": 5, "operational": 6}
EXERCISE_RANK = 7
LOWEST = EXERCISE_RANK
KINDS = ("warning", *KIND_RANKS)
# What each rank holds, by rank (0 first): the names the queue summary shows.
RANK_NAMES = ("warning_awas", "warning_siaga", "warning_waspada", "reminder", "reply", "broadcast", "operational",
              "exercise")


def priority(kind: str, level: str | None = None, *, exercise: bool = False) -> int:
    """The rank of a notification of ``kind`` (and warning ``level``): 0 goes first, 7 last."""
    if exercise:
        return EXERCISE_RANK
    if kind == "warning":
        return WARNING_RANKS.get(str(level or "").lower(), WARNING_RANKS["waspada"])
    try:
        return KIND_RANKS[kind]
    except KeyError:
        raise ValueError(f"unknown notification kind {kind!r}; use one of {', '.join(KINDS)}") from None


def letter(rank: int) -> str:
    """The rank as a priority letter, ``A`` (rank 0) to ``H``: the order of Gammu's outbox."""
    if not 0 <= rank <= LOWEST:
        raise ValueError(f"rank {rank} is outside 0..{LOWEST}")
    return chr(ord("A") + rank)
