"""What is waiting to be sent, by priority (spec section 10, "Urgent first"): the queue an operator watches.

A message is *queued* while it is ``pending`` (waiting, or waiting for a retry) or ``sending``
(claimed by a sender, not yet taken by the provider). The summary has one row for every rank of
``alerts.priority``, most urgent first, so a screen always shows the same lines.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alerts import priority
from alerts.times import rfc3339
from service.db.schema import notifications as n

QUEUED = ("pending", "sending")


def summary(conn: Connection) -> dict:
    """``{total, priorities: [{priority, name, queued, pending, sending, oldest_created_at}]}``, rank 0 first."""
    rows = conn.execute(
        sa.select(n.c.priority, n.c.status, sa.func.count().label("count"), sa.func.min(n.c.created_at).label("oldest"))
        .where(n.c.status.in_(QUEUED)).group_by(n.c.priority, n.c.status)).all()
    ranks = {rank: _rank(rank) for rank in range(len(priority.RANK_NAMES))}
    oldest: dict[int, object] = {}
    for row in rows:
        rank = ranks.setdefault(row.priority, _rank(row.priority))
        rank[row.status] += row.count
        rank["queued"] += row.count
        if row.oldest is not None and (row.priority not in oldest or row.oldest < oldest[row.priority]):
            oldest[row.priority] = row.oldest
    for rank, at in oldest.items():
        ranks[rank]["oldest_created_at"] = rfc3339(at)
    listed = [ranks[rank] for rank in sorted(ranks)]
    return {"total": sum(r["queued"] for r in listed), "priorities": listed}


def _rank(rank: int) -> dict:
    """An empty row of the summary for ``rank``."""
    name = priority.RANK_NAMES[rank] if 0 <= rank < len(priority.RANK_NAMES) else f"rank_{rank}"
    return {"priority": rank, "name": name, "queued": 0, "pending": 0, "sending": 0, "oldest_created_at": None}
