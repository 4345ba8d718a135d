"""Which senders left claimed SMS behind: the stale-claim checks of a dispatcher.

An instance id is ``host-pid`` (``service/wiring.py``). A row in ``sending`` whose claimer is a
process of this host that no longer exists was left by a crash; so is our own id on a fresh
start (a container restarts as pid 1 again). Rows of other hosts wait for ``stale_after``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable


def host_and_pid(instance: str) -> tuple[str, int | None]:
    """``host-1234`` -> (``host``, 1234); an id without a pid -> (the id, None)."""
    host, _, pid = instance.rpartition("-")
    try:
        return host, int(pid)
    except ValueError:
        return instance, None


def pid_alive(pid: int) -> bool:
    """True when a process of that pid exists on this host (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_senders(claimers: Iterable[str], me: str, on_start: bool = False) -> list[str]:
    """The claimers among ``claimers`` known to be dead: gone processes of this host, and ``me`` on a start."""
    host = socket.gethostname()
    dead = []
    for instance in claimers:
        their_host, pid = host_and_pid(instance)
        if instance != me and their_host == host and pid is not None and not pid_alive(pid):
            dead.append(instance)
    if on_start:
        # Our own id on a fresh start: a previous process with the same pid (containers: pid 1).
        dead.append(me)
    return dead
