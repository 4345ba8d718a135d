"""GSM-7 (3GPP TS 23.038): which characters an SMS can carry without falling back to UCS-2.

Indonesian networks do not officially support UCS-2 and a single UCS-2 character cuts a
segment from 160 to 70 characters, so every outgoing text goes through ``sanitise()``:
typographic characters become their ASCII look-alikes, accented letters outside the table
lose their accents, anything else unsendable (emoji) is dropped.
"""

from __future__ import annotations

import unicodedata

SEGMENT = 160  # septets in one single-part message
SEGMENT_MULTIPART = 153  # septets per part of a concatenated message (6-byte UDH)

BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Reached through the escape code 0x1B: each costs two septets.
EXTENSION = frozenset("^{}\\[~]|€\f")

# Typographic characters people paste from word processors and chat apps.
_REPLACEMENTS = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...",
    "\u00b0": " derajat ",  # 28°C -> "28 derajat C"; the spaces are squeezed below
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u2009": " ", "\u200a": " ", "\u2002": " ", "\u2003": " ",
    "\t": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "", "\ufe0f": "",
    "\u2022": "-", "\u00b7": "-",
    "\u00d7": "x", "\u00f7": "/",
    "\u00bd": "1/2", "\u00bc": "1/4", "\u00be": "3/4",
    "\u00b2": "2", "\u00b3": "3", "\u00b9": "1",
    "\u00a9": "(c)", "\u00ae": "(R)", "\u2122": "TM",
    "\u2192": "->", "\u2190": "<-",
    "\u2264": "<=", "\u2265": ">=",
    "\u00e7": "c",  # the table has only the capital Ç
}


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM-7 basic or extension table."""
    return all(ch in BASIC or ch in EXTENSION for ch in text)


def septets(text: str) -> int:
    """The length of ``text`` in GSM-7 septets (extension characters count 2)."""
    return sum(2 if ch in EXTENSION else 1 for ch in text)


def segments(text: str) -> int:
    """How many SMS parts ``text`` needs when sent as GSM-7."""
    n = septets(text)
    if n <= SEGMENT:
        return 1
    return -(-n // SEGMENT_MULTIPART)


def _one(ch: str) -> str:
    if ch in BASIC or ch in EXTENSION:
        return ch
    if ch in _REPLACEMENTS:
        return _REPLACEMENTS[ch]
    # Accented letters outside the table (á, â, ê ...): keep the base letter.
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if base and base != ch and all(c in BASIC or c in EXTENSION or c in _REPLACEMENTS for c in base):
        return "".join(_one(c) for c in base)
    category = unicodedata.category(ch)
    if category.startswith("Z"):  # any other space
        return " "
    return ""  # emoji, symbols and scripts the table cannot carry


def sanitise(text: str) -> str:
    """``text`` made GSM-7 only: look-alikes for typographic characters, no accents outside the table, no emoji."""
    out = "".join(_one(ch) for ch in text)
    # Replacements and dropped emoji leave double or trailing spaces; squeeze them, keep the newlines.
    lines = [" ".join(part for part in line.split(" ") if part) for line in out.split("\n")]
    return "\n".join(lines)


def truncate(text: str, limit: int = SEGMENT) -> str:
    """``text`` cut to at most ``limit`` septets, ending with '...' when cut."""
    if septets(text) <= limit:
        return text
    out, used = [], 0
    for ch in text:
        cost = 2 if ch in EXTENSION else 1
        if used + cost > limit - 3:
            break
        out.append(ch)
        used += cost
    return "".join(out).rstrip() + "..."
