"""Keyset pagination: ``limit`` (default 100, max 1000) and an opaque ``cursor``.

A list answers ``{"items": [...], "next_cursor": "..." or null}``. Usage in a view::

    @blp.arguments(PageArgs, location="query")      # or a subclass adding filters
    @blp.response(200, page_schema(ThingSchema))
    def get(self, args):
        query = sa.select(t).where(...)
        return page_of(query, (t.c.ts, t.c.id), args, to_json)

``keyset_page(conn, query, columns, args)`` gives ``(rows, next_cursor)`` to a view that reads more
in the same connection.

The cursor encodes the sort key of the last row returned, so pages stay stable while new
rows arrive (newest first by default).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

import marshmallow as ma
import sqlalchemy as sa

from service.http import reading
from service.http.errors import field_error

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class PageArgs(ma.Schema):
    """The paging query parameters every list takes."""

    limit = ma.fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=ma.validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"},
    )
    cursor = ma.fields.String(
        load_default=None,
        validate=ma.validate.Length(max=512),
        metadata={"description": "next_cursor of the previous page"},
    )


_page_schemas: dict[str, type[ma.Schema]] = {}


def page_schema(item_schema: type[ma.Schema] | ma.Schema, name: str | None = None) -> type[ma.Schema]:
    """A ``{"items": [item], "next_cursor"}`` schema class for ``item_schema`` (cached per name)."""
    item_cls = item_schema if isinstance(item_schema, type) else type(item_schema)
    name = name or item_cls.__name__.removesuffix("Schema") + "PageSchema"
    if name not in _page_schemas:
        _page_schemas[name] = type(
            name,
            (ma.Schema,),
            {
                "items": ma.fields.List(ma.fields.Nested(item_cls), required=True),
                "next_cursor": ma.fields.String(allow_none=True, required=True),
            },
        )
    return _page_schemas[name]


def encode_cursor(values: tuple) -> str:
    """An opaque cursor for the sort key ``values``."""
    plain = [{"t": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, columns) -> tuple:
    """The sort key in ``cursor``; a 422 problem naming ``cursor`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        plain = json.loads(raw)
        if not isinstance(plain, list) or len(plain) != len(columns):
            raise ValueError("wrong shape")
        values = []
        for value, column in zip(plain, columns):
            if isinstance(value, dict):
                values.append(datetime.fromisoformat(value["t"]))
                if values[-1].tzinfo is None:
                    raise ValueError("naive time")
            elif isinstance(value, (int, str)) and not isinstance(value, bool):
                if isinstance(value, int) and not -(2**63) <= value < 2**63:
                    raise ValueError("out of range")
                values.append(value)
            else:
                raise ValueError("bad value")
        return tuple(values)
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise field_error("cursor", "is not a cursor from a previous page of this list") from None


def _after(columns, values, descending: bool):
    """Rows strictly after ``values`` in the (lexicographic) sort order of ``columns``."""
    column, value = columns[0], values[0]
    beyond = column < value if descending else column > value
    if len(columns) == 1:
        return beyond
    return sa.or_(beyond, sa.and_(column == value, _after(columns[1:], values[1:], descending)))


def keyset_page(conn, query, columns, args: dict, *, descending: bool = True):
    """Run ``query`` for one page ordered by ``columns``; return ``(rows, next_cursor)``."""
    limit = int(args.get("limit") or DEFAULT_LIMIT)
    cursor = args.get("cursor")
    if cursor:
        query = query.where(_after(columns, decode_cursor(cursor, columns), descending))
    order = [c.desc() if descending else c.asc() for c in columns]
    rows = conn.execute(query.order_by(*order).limit(limit + 1)).fetchall()
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]._mapping
    return rows, encode_cursor(tuple(_value(last, c) for c in columns))


def page_of(query, columns, args: dict, to_json) -> dict:
    """One page of ``query`` (newest first) as a list answer: ``{"items": [to_json(row), ...], "next_cursor"}``."""
    with reading() as conn:
        rows, next_cursor = keyset_page(conn, query, columns, args)
    return {"items": [to_json(row) for row in rows], "next_cursor": next_cursor}


def _value(mapping, column):
    try:
        return mapping[column]
    except KeyError:
        return mapping[column.name]
