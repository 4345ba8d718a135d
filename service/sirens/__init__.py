"""Sirens in the database and on MQTT (spec section 12): commands, acks, re-sends, the ``siren`` alert.

``controller.SirenController`` is a thread of the process that holds the MQTT connection (roles
``all`` and ``ingest``); with several such instances only the holder of the ``sirens`` lease
decides and publishes. Each pass it compares every siren with its station's open alerts
(``plan``; ``alerts.sirens`` decides), stores each new command (``siren_commands``, status
``pending``, ``state.issue``) and only then publishes it; an unanswered one is published again
with the same ``command_id`` every ``EWS_SIREN_ACK_TIMEOUT_S``. The thread sleeps exactly until
the next re-send or renewal is due (or it is woken: new alert events, an operator's command, an
ack), never a scheduler period. Because a command is stored before it is published, a process
killed between the two publishes it after the restart; one killed while awaiting the ack
re-sends or keeps awaiting it.

Acks arrive on ``{prefix}/sirens/{id}/ack`` through the ingest client (``acks.record_acks``):
every instance records them (idempotent), after which the ingest worker acknowledges the MQTT
message. A siren that does not answer, or answers ``error``, opens its station's staff-only
``siren`` alert (``troubles``). Operators' commands and ``GET /sirens`` are ``operators``.

The rooms: ``state`` (the registry, the state rows, storing a command), ``plan``, ``operators``,
``troubles``, ``acks``, ``controller``.
"""
