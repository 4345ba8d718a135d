"""Errors as ``application/problem+json`` (RFC 9457), for every status the API answers.

Raise ``Problem(status, detail, errors=[...])`` (or call ``abort_problem``) anywhere in a view;
werkzeug ``HTTPException``s (404, 405, webargs' 422 ...) are turned into the same shape, and so
are our own errors (alerts/errors.py) a view lets through: a ``FieldError`` is a 422 naming its
field, a ``Conflict`` a 409.
"""

from __future__ import annotations

import contextlib
import http
import logging
from collections.abc import Iterator, Mapping

import marshmallow as ma
from flask import Response, json
from werkzeug.exceptions import HTTPException

from alerts.errors import Conflict, FieldError

PROBLEM_MIMETYPE = "application/problem+json"
VALIDATION_TYPE = "urn:ews:problem:validation-error"

log = logging.getLogger(__name__)


class Problem(Exception):
    """An error answer: status, a human ``detail`` and optional ``errors`` ``[{field, message}]``."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",  # noqa: A002 - the RFC 9457 member name
        errors: list[dict] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title or str(status))
        self.status = int(status)
        self.detail = detail
        self.title = title
        self.type = type
        self.errors = errors
        self.headers = dict(headers or {})


def abort_problem(status: int, detail: str | None = None, **kwargs) -> None:
    """Stop the request with a problem answer (see ``Problem``)."""
    raise Problem(status, detail, **kwargs)


def field_error(field: str, message: str, status: int = 422) -> Problem:
    """A validation problem naming one field; ``raise field_error("lat", "must be ...")``."""
    return Problem(status, f"{field}: {message}", type=VALIDATION_TYPE, title="Validation failed",
                   errors=[{"field": field, "message": message}])


@contextlib.contextmanager
def not_found_as_404(detail: str) -> Iterator[None]:
    """Answer a ``LookupError`` raised in the block (what is asked for is not there) as a 404 with ``detail``."""
    try:
        yield
    except LookupError as missing:
        if isinstance(missing, (KeyError, IndexError)):
            raise  # a slip in our code, not an absent record: a 500, never a misleading 404
        raise Problem(404, detail) from None


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(problem: Problem) -> Response:
    """Render a ``Problem`` as an ``application/problem+json`` response."""
    body = {
        "type": problem.type,
        "title": problem.title or _phrase(problem.status),
        "status": problem.status,
        "detail": problem.detail or problem.title or _phrase(problem.status),
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    response = Response(json.dumps(body), status=problem.status, mimetype=PROBLEM_MIMETYPE)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def flatten_messages(messages, prefix: str = "") -> list[dict]:
    """Turn webargs/marshmallow nested messages into ``[{field, message}]`` with dotted names.

    The request location (``json``, ``query``, ...) is dropped: field names are what clients send.
    """
    out: list[dict] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            key = str(key)
            if not prefix and key in ("json", "query", "path", "form", "headers", "files", "view_args", "querystring"):
                out.extend(flatten_messages(value, ""))
                continue
            name = f"{prefix}.{key}" if prefix else key
            if key == ma.exceptions.SCHEMA or key == "_schema":
                name = prefix or "body"
            out.extend(flatten_messages(value, name))
    elif isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            for m in messages:
                out.append({"field": prefix or "body", "message": m})
        else:
            for m in messages:
                out.extend(flatten_messages(m, prefix))
    else:
        out.append({"field": prefix or "body", "message": str(messages)})
    return out


def problem_from_http_exception(error: HTTPException) -> Problem:
    """The problem for a werkzeug/webargs HTTP exception."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    messages = data.get("messages") or data.get("errors")
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    if messages:
        errors = flatten_messages(messages)
        if status == 400 and any(e["message"].lower().startswith("invalid json") for e in errors):
            return Problem(400, "The request body is not valid JSON.", title="Malformed JSON",
                           errors=errors, headers=headers)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return Problem(status, detail, type=VALIDATION_TYPE if status == 422 else "about:blank",
                       title="Validation failed" if status == 422 else None, errors=errors, headers=headers)
    detail = data.get("message") or error.description
    return Problem(status, detail, headers=headers)


def register_error_handlers(app) -> None:
    """Make every error answer of ``app`` a problem document."""

    @app.errorhandler(Problem)
    def _problem(problem: Problem):
        return problem_response(problem)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if error.code is None:  # a RequestRedirect and the like carry their own response
            return error
        if 300 <= error.code < 400:
            return error.get_response()
        return problem_response(problem_from_http_exception(error))

    # Our own errors (alerts/errors.py) a view let through: the field it names, or the clash.
    @app.errorhandler(FieldError)
    def _field_error(error: FieldError):
        return problem_response(field_error(error.field, error.message))

    @app.errorhandler(Conflict)
    def _conflict(error: Conflict):
        return problem_response(Problem(409, str(error)))

    import sqlalchemy.exc

    @app.errorhandler(sqlalchemy.exc.DataError)
    def _data_error(error):
        # Safety net: a value the database cannot store (NUL in text, out-of-range number)
        # is the client's input, not a server fault. Routes should validate before this.
        log.warning("database refused a value: %s", str(error.orig)[:200])
        return problem_response(Problem(422, "A value in the request cannot be stored (e.g. a NUL character "
                                             "or a number out of range).", type=VALIDATION_TYPE,
                                        title="Validation failed", errors=[]))

    @app.errorhandler(OverflowError)
    def _overflow(error):
        # Safety net: SQLite cannot bind an integer beyond 64 bits; routes should range-check.
        log.warning("number out of range reached the database: %s", error)
        return problem_response(Problem(422, "A number in the request is out of range.", type=VALIDATION_TYPE,
                                        title="Validation failed", errors=[]))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error in %s", type(error).__name__)
        return problem_response(Problem(500, "An unexpected error occurred; it has been logged."))


class ProblemErrorSchema(ma.Schema):
    """An RFC 9457 problem document (documentation only)."""

    type = ma.fields.String(metadata={"description": "URI naming the problem type (about:blank for plain HTTP errors)"})
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    errors = ma.fields.List(
        ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String()),
        metadata={"description": "for validation failures: [{field, message}]"},
    )
