"""Phone numbers: normalise what people type to E.164 (region ID), and mask them for logs.

Accepted forms include ``0812-3456-7890``, ``0812 3456 7890``, ``(0812) 3456-7890``,
``+62 812 3456 7890``, ``62 812-3456-7890``, ``6281234567890``, ``81234567890`` and the common
mistake of keeping the trunk zero after the country code: ``+62 0812…`` / ``620812…``.
"""

from __future__ import annotations

import re

import phonenumbers

from alerts.errors import InvalidPhone

DEFAULT_REGION = "ID"
_SEPARATORS = re.compile(r"[\s\-\.\(\)/\u00a0\u2010-\u2015]")
# A phone number inside a text: at least 8 digits, maybe a leading +, spaces, dashes, dots or
# brackets between them, and no letter or digit right before or after (a message sid is not one).
_NUMBER_IN_TEXT = re.compile(r"(?<![\w+])\+?\(?\d(?:[ ().-]{0,2}\d){7,}(?![\w])")


def normalise(raw: str, region: str = DEFAULT_REGION, *, mobile_only: bool = False) -> str:
    """``raw`` as E.164 (``+6281234567890``); raise ``InvalidPhone`` when it is not a valid number."""
    if raw is None or not str(raw).strip():
        raise InvalidPhone("is empty")
    text = str(raw).strip()
    if len(text) > 40:
        raise InvalidPhone("is too long to be a phone number")
    compact = _SEPARATORS.sub("", text)
    if compact.startswith("00"):  # international prefix dialled from Indonesia
        compact = "+" + compact[2:]
    if not re.fullmatch(r"\+?\d{6,17}", compact):
        raise InvalidPhone("may only hold digits, spaces, dashes, dots, brackets and a leading +")
    digits = compact.lstrip("+")
    if region == "ID":
        # "+62 0812…" / "620812…": the trunk zero kept after the country code.
        if digits.startswith("620"):
            digits = "62" + digits[3:]
            compact = "+" + digits
        elif digits.startswith("62") and not compact.startswith("+") and len(digits) >= 11:
            compact = "+" + digits  # "6281234567890" typed without the plus
        elif digits.startswith("8") and not compact.startswith("+"):
            compact = "0" + digits  # "81234567890": the national number without its zero
    try:
        number = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("is not a valid phone number")
    if mobile_only and phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidPhone("is not a mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_valid(raw: str, region: str = DEFAULT_REGION) -> bool:
    """True when ``raw`` normalises to a valid number."""
    try:
        normalise(raw, region)
    except InvalidPhone:
        return False
    return True


def mask(phone: str | None) -> str:
    """A phone number fit for logs: ``+6281234567890`` -> ``+62812****7890``."""
    if not phone:
        return "-"
    phone = str(phone)
    if len(phone) <= 8:
        return phone[:2] + "*" * max(0, len(phone) - 2)
    head = 6 if phone.startswith("+") else 5
    tail = 4
    hidden = max(1, len(phone) - head - tail)
    return phone[:head] + "*" * hidden + phone[-tail:]


def mask_numbers(text: str | None) -> str | None:
    """``text`` with every phone number in it masked (a provider's error message may quote the number)."""
    if not text:
        return text
    return _NUMBER_IN_TEXT.sub(lambda m: mask(("+" if m.group().startswith("+") else "") + re.sub(r"\D", "", m.group())),
                               str(text))
