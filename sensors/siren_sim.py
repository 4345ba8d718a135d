"""Simulated siren controllers for ``ews simulate --sirens`` (spec section 12, docs/sirens.md).

A controller reads ``{prefix}/sirens/{id}/command`` and answers on ``{prefix}/sirens/{id}/ack``
with ``{"command_id", "state", "detail"}``: ``on`` for ``on`` and ``test``, ``off`` for ``off``. It
ignores a command whose ``expires_at`` has passed (e.g. one queued across a reconnect) and answers
a repeated ``command_id`` again without acting twice. A *silent* siren receives its commands and
never answers: the service re-sends them and then tells staff it does not respond.

One MQTT client carries every simulated siren (a broker with ``use_username_as_clientid`` would
let a second connection of the same user take the first one's place).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from sensors import topics


def answer_for(command: dict, now: datetime, seen: set[str]) -> tuple[dict | None, str]:
    """The ack a working controller sends for ``command`` (None: ignore it) and what it does, in words."""
    command_id = command.get("command_id")
    action = command.get("action")
    if not isinstance(command_id, str) or action not in ("on", "off", "test"):
        return None, f"ignored a command it cannot read: {str(command)[:80]}"
    try:
        expires = datetime.fromisoformat(str(command.get("expires_at")).replace("Z", "+00:00"))
    except ValueError:
        return None, f"ignored command {command_id[:8]}: no valid expires_at"
    if expires <= now:
        return None, f"ignored command {command_id[:8]}: expired at {command.get('expires_at')}"
    state = "off" if action == "off" else "on"
    repeated = command_id in seen
    seen.add(command_id)
    if repeated:
        return {"command_id": command_id, "state": state, "detail": "repeated command"}, \
            f"answered a repeated command {command_id[:8]} again"
    what = {"on": f"ON ({command.get('level') or 'by hand'}, {command.get('duration_s')} s)",
            "off": "OFF", "test": f"TEST ({command.get('duration_s')} s)"}[action]
    return {"command_id": command_id, "state": state, "detail": "simulated"}, f"{what}, command {command_id[:8]}"


class SimulatedSirens:
    """Answering (and silent) siren controllers on one MQTT client."""

    def __init__(self, client, prefix: str, answering: Iterable[str], silent: Iterable[str] = (), *,
                 say: Callable[[str], None] = print, clock: Callable[[], datetime] | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self.answering = sorted(set(answering) - set(silent))
        self.silent = sorted(set(silent))
        self.say = say
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.received: list[tuple[str, dict]] = []
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *args: self._subscribed.set()
        client.on_message = self._on_message

    def ids(self) -> list[str]:
        """Every simulated siren id."""
        return self.answering + self.silent

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the broker confirmed the command subscriptions."""
        return self._subscribed.wait(timeout)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure and self.ids():
            client.subscribe([(topics.siren_command_topic(self.prefix, sid), 1) for sid in self.ids()])

    def _on_message(self, client, userdata, message) -> None:
        siren_id = topics.parse_siren_topic(self.prefix, message.topic, "command")
        if siren_id is None:
            return
        try:
            command = json.loads(message.payload)
        except ValueError:
            command = {}
        with self._lock:
            self.received.append((siren_id, command))
            seen = self._seen.setdefault(siren_id, set())
        if siren_id in self.silent:
            self.say(f"siren {siren_id} (silent): received {command.get('action')} {str(command.get('command_id'))[:8]}"
                     ", not answering")
            return
        ack, words = answer_for(command if isinstance(command, dict) else {}, self.clock(), seen)
        self.say(f"siren {siren_id}: {words}")
        if ack is not None:
            client.publish(topics.siren_ack_topic(self.prefix, siren_id), json.dumps(ack).encode(), qos=1)
