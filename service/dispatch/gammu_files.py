"""The file formats of gammu-smsd's ``files`` backend: outbox names and contents, inbox names and texts.

Pure functions (no I/O). Gammu's rules (docs/manual/smsd/files.rst, smsd/services/files.c):

- The daemon sends ``outbox/OUT<priority><date>_<time>_<serial>_<number>_<note>.<ext>`` files in
  the order of their names (``A`` first), skips names starting with ``.`` and names not starting
  with ``OUT``, and moves each file, under the same name, to ``sent/`` or ``error/``.
- ``.smsbackup`` files are Gammu's SMS backup format (the ``detail`` outbox format: the text is
  UTF-16BE in hex, the number inside the file); ``.txt`` files (``standard``) hold the text, in
  UTF-16 with a byte-order mark here so the daemon's locale cannot garble it, and the number is
  taken from the name.
- Received messages become ``inbox/IN<date>_<time>_<serial>_<sender>_<part>.txt``: one file per
  part of a multipart message, the text as UTF-8 (``standard``; ``unicode`` writes UTF-16 with a BOM).

Our outbox names put the notification's priority letter, its creation time (UTC) and its id
(12 digits, as the serial) first, so the daemon keeps the order of spec section 10 (urgent
first, then oldest first), every field has a fixed width (the daemon sorts with ``strcoll``,
which may skip the underscores), and a restarted service finds the file of a notification by
its id alone.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone

from alerts.priority import letter

NOTE = "ews"
FORMATS = {"detail": "smsbackup", "standard": "txt"}
TEMP_PREFIX = ".ews-"  # hidden, no OUT prefix, .tmp: the daemon ignores it on all three counts
TEMP_SUFFIX = ".tmp"
OUTBOX_RE = re.compile(r"^OUT([A-Z])(\d{8})_(\d{6})_(\d{12})_([^_]+)_" + NOTE + r"\.(smsbackup|txt)$")
NUMBER_RE = re.compile(r"^\+?[0-9]{3,20}$")
INBOX_RE = re.compile(r"^(IN\d{8}_\d{6}_\d{2}_(.+))_(\d{2})\.(txt|bin|smsbackup)$")


def outbox_name(rank: int, created_at: datetime, notification_id: int, phone: str, fmt: str = "detail") -> str:
    """The outbox file name of a notification: priority letter, UTC creation time, id, number."""
    when = created_at.astimezone(timezone.utc)
    return (f"OUT{letter(rank)}{when:%Y%m%d}_{when:%H%M%S}_{notification_id:012d}_{_escape(phone)}_{NOTE}"
            f".{FORMATS[fmt]}")


def notification_id(name: str) -> int | None:
    """The notification id in one of our outbox file names, or None for anyone else's file."""
    match = OUTBOX_RE.match(name)
    return int(match.group(4)) if match else None


def names_for(rank: int, created_at: datetime, notification_id: int, phone: str) -> list[str]:
    """Every name our outbox file of this notification may have (either format)."""
    return [outbox_name(rank, created_at, notification_id, phone, fmt) for fmt in FORMATS]


def _escape(number: str) -> str:
    # The daemon sends a .txt file to the number in its name: only plain numbers (E.164) go there.
    if not NUMBER_RE.match(number):
        raise ValueError(f"{number!r} is not a phone number Gammu can send to")
    return number


def outbox_content(phone: str, body: str, fmt: str, now: datetime) -> bytes:
    """The bytes of an outbox file holding ``body`` for ``phone`` in format ``fmt``."""
    if fmt == "standard":
        return b"\xfe\xff" + body.encode("utf-16-be")
    if fmt != "detail":
        raise ValueError(f"unknown Gammu outbox format {fmt!r}; use detail or standard")
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S")
    lines = [
        "; Written by EWS Luwu Timur for gammu-smsd (Gammu SMS backup format)",
        "",
        "[SMSBackup000]",
        "PDU = Submit",
        f"DateTime = {stamp}Z",
        "State = UnSent",
        f'Number = "{phone}"',
        f"NumberUnicode = {_hex(phone)}",
        'Name = ""',
        "NameUnicode = ",
        f"Text00 = {_hex(body)}",
        # Our texts are GSM-7 (alerts.gsm7): the default alphabet, one 160-character segment.
        "Coding = Default_No_Compression",
        "Folder = 1",
        f"Length = {len(body)}",
        "Class = -1",
        "ReplySMSC = False",
        "RejectDuplicates = False",
        "ReplaceMessage = 0",
        "MessageReference = 0",
        "",
    ]
    return "\n".join(lines).encode("ascii")


def _hex(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


def read_outbox_content(data: bytes, name: str) -> tuple[str | None, str]:
    """(number, text) of an outbox file; the number is None in a ``.txt`` file (it is in the name)."""
    if name.endswith(".txt"):
        return None, decode_text(data)
    fields = _backup_fields(data.decode("ascii", errors="replace"))
    number = fields.get("Number", "").strip('"') or None
    return number, _backup_text(fields)


def _backup_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith((";", "#", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _backup_text(fields: dict[str, str]) -> str:
    parts = sorted((k for k in fields if re.fullmatch(r"Text\d\d", k)), key=lambda k: int(k[4:]))
    try:
        return "".join(bytes.fromhex(fields[k]).decode("utf-16-be") for k in parts)
    except ValueError:
        return ""


def decode_text(data: bytes) -> str:
    """A received or ``.txt`` text: UTF-16 when it starts with a byte-order mark, else UTF-8."""
    if data[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8", errors="replace")


@dataclasses.dataclass(frozen=True)
class InboxPart:
    """One file of ``inbox/``: a part of a received message."""

    name: str
    key: str  # the message: the name without its part number (parts of one message share it)
    sender: str
    part: int
    ext: str


def inbox_part(name: str) -> InboxPart | None:
    """The received-message part named ``name``, or None for a file that is not one."""
    match = INBOX_RE.match(name)
    if not match:
        return None
    return InboxPart(name, match.group(1), match.group(2), int(match.group(3)), match.group(4))


def inbox_text(data: bytes, ext: str) -> str:
    """The text of one inbox file (``standard``/``unicode`` .txt, ``detail`` .smsbackup; .bin is not text)."""
    if ext == "bin":
        return ""
    if ext == "smsbackup":
        return _backup_text(_backup_fields(data.decode("ascii", errors="replace")))
    return decode_text(data)
