"""How an ``/api/v1`` view declares itself: ``operation`` for any view, ``paged_list`` for a list.

Usage in a ``MethodView``::

    @operation(blp, "operator", 201, ThingSchema, body=ThingIn, conflict=True)
    def post(self, data):
        ...

    @paged_list(blp, "viewer", ThingArgs, ThingSchema, order=(t.c.id,), to_json=thing_json)
    def get(self, args):
        \"\"\"Things, newest first.\"\"\"
        return where_equal(sa.select(t), args, ("kind", "station_id"))

The role is always applied outermost, so a caller without a token gets 401/403 before the
request is validated; everything else a route documents by hand (``@blp.doc``, other
``alt_response``) stands below it.
"""

from __future__ import annotations

import functools

from service.http.answers import serve_held
from service.http.auth import require
from service.http.pagination import page_of, page_schema


def operation(blp, role: str, status: int | None = 200, answer=None, *, query=None, body=None,
              body_required: bool = True, conflict: bool = False, held=None):
    """A view of ``blp`` for ``role``: its ``query`` arguments, its ``body``, its ``status`` answer and a 409.

    ``answer`` is the schema of the ``status`` answer (none for a 204); ``status=None`` leaves the
    answer to the route's own ``@blp.doc``. ``conflict``: the view may answer 409. ``held``: the
    view's ``SharedAnswers`` (a callable giving them); one held for the query string is returned
    before the arguments are parsed again (``service.http.answers.serve_held``).
    """
    def decorate(view):
        if conflict:
            view = blp.alt_response(409, response="CONFLICT")(view)
        if status is not None:
            view = blp.response(status, answer)(view)
        if body is not None:
            view = blp.arguments(body, required=body_required)(view)
        if query is not None:
            view = blp.arguments(query, location="query")(view)
        if held is not None:
            view = serve_held(held)(view)
        return require(role)(view)

    return decorate


def paged_list(blp, role: str, args, item, *, order, to_json):
    """A ``get`` for ``role`` whose view returns the query of what to list: answered a page at a time.

    The page is newest first by the ``order`` columns, each row as ``to_json(row)``; the query
    arguments are ``args`` (``PageArgs`` or a subclass with the list's filters).
    """
    def decorate(view):
        @functools.wraps(view)
        def get(self, query_args):
            return page_of(view(self, query_args), order, query_args, to_json)

        return operation(blp, role, 200, page_schema(item), query=args)(get)

    return decorate


def where_equal(query, args: dict, names):
    """``query`` narrowed to the rows whose column ``name`` equals each filter of ``names`` given in ``args``.

    A filter left out (or empty) is no filter; the columns are those ``query`` selects.
    """
    for name in names:
        if args.get(name) not in (None, ""):
            query = query.where(query.selected_columns[name] == args[name])
    return query
