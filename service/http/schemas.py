"""Shared marshmallow fields and helpers for the API."""

from __future__ import annotations

from datetime import timezone

import marshmallow as ma

from alerts.times import rfc3339




class UTCDateTime(ma.fields.DateTime):
    """An RFC 3339 time: must carry an offset on input, always UTC ``Z`` on output."""

    default_error_messages = {"naive": "must include a time zone offset (e.g. Z or +08:00)"}

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if isinstance(value, str):
            return value
        return rfc3339(value)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and len(value) > 64:
            raise self.make_error("invalid", input=value[:64], obj_type="datetime")
        result = super()._deserialize(value, attr, data, **kwargs)
        if result.tzinfo is None:
            raise self.make_error("naive")
        try:
            return result.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            raise self.make_error("invalid", input=value, obj_type="datetime") from None


class Strict(ma.Schema):
    """A request body schema that refuses unknown fields (422 naming them)."""

    class Meta:
        unknown = ma.RAISE


_CONTROL = {chr(c) for c in range(0x20)} | {"\x7f"}


def _no_control(value: str) -> None:
    if any(ch in _CONTROL for ch in value):
        raise ma.ValidationError("must not contain control characters")


class Text(ma.fields.String):
    """A one-line string without control characters (PostgreSQL refuses NUL in text)."""

    def __init__(self, *args, max_length: int | None = None, min_length: int | None = None, **kwargs):
        given = kwargs.pop("validate", None)
        validators = list(given) if isinstance(given, (list, tuple)) else ([given] if given else [])
        validators.insert(0, _no_control)
        if max_length is not None or min_length is not None:
            validators.append(ma.validate.Length(min=min_length, max=max_length))
        super().__init__(*args, validate=validators, **kwargs)
