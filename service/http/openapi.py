"""The OpenAPI document's house rules, applied to every route in one place.

An apispec plugin (``DocumentConventions``) sees each operation as flask-smorest registers
it and fills in what no route should have to write by hand:

- ``operationId``, generated from the method and the path (``operation_id``), so client
  generators get stable, readable method names (``listStations``, ``getStation``,
  ``replaceStationRules``, ``ackAlert``) and a new route gets one without anyone thinking of
  it. A route may still set its own with ``@blp.doc(operationId=...)``: that one wins.
- a ``description`` on every response that lacks one (OpenAPI 3 requires it): the HTTP
  status phrase.

docs/api.md lists the naming rules and the outside checks the document passes
(``openapi-spec-validator`` and Spectral's ``spectral:oas`` ruleset).
"""

from __future__ import annotations

from http import HTTPStatus

from apispec import BasePlugin

OPERATION_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# What an operation on one item is called, by method.
ITEM_VERBS = {"get": "get", "put": "replace", "patch": "update", "delete": "delete", "post": "post"}
# ... on a collection (a path ending in a plural noun with nothing after it).
COLLECTION_VERBS = {"get": "list", "post": "create", "put": "replace", "patch": "update", "delete": "delete"}


def _words(segment: str) -> str:
    """``dead-letters`` -> ``DeadLetters``; ``report.html`` -> ``ReportHtml``."""
    for separator in "-_.":
        segment = segment.replace(separator, " ")
    return "".join(word[:1].upper() + word[1:] for word in segment.split())


def _singular(noun: str) -> str:
    """The singular of the plural nouns our paths use (``stations``, ``dead-letters``, ``exercises``)."""
    if noun.endswith("ies"):
        return noun[:-3] + "y"
    if noun.endswith("s") and not noun.endswith("ss"):
        return noun[:-1]
    return noun


def _is_param(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def operation_id(method: str, path: str, prefix: str = "/api/v1") -> str:
    """A readable, stable operationId for ``method`` on ``path``.

    ``GET /stations`` -> ``listStations``, ``POST /stations`` -> ``createStation``,
    ``GET /stations/{id}`` -> ``getStation``, ``PUT /stations/{id}/rules`` ->
    ``replaceStationRules``, ``POST /alerts/{id}/ack`` -> ``ackAlert``,
    ``POST /subscribers/import`` -> ``importSubscribers``.
    """
    method = method.lower()
    segments = [s for s in path.removeprefix(prefix).split("/") if s]
    if not segments:
        return method + "Root"
    # Each literal names a resource; one followed by an id names one item of it (singular).
    nouns = [(_singular(s) if i + 1 < len(segments) and _is_param(segments[i + 1]) else s)
             for i, s in enumerate(segments) if not _is_param(s)]
    last = segments[-1]
    if _is_param(last):
        verb = ITEM_VERBS.get(method, method)
    elif len(nouns) == 1:
        verb = COLLECTION_VERBS.get(method, method)
        if method == "post":
            nouns[-1] = _singular(nouns[-1])
    elif method == "post" and not last.endswith("s"):
        # A verb after a resource is an action on it: POST /alerts/{id}/ack, POST /subscribers/import.
        verb, nouns = last, nouns[:-1]
    else:
        verb = ITEM_VERBS.get(method, method) if method != "post" else "create"
    return verb + "".join(_words(noun) for noun in nouns)


class DocumentConventions(BasePlugin):
    """Fills each operation's ``operationId`` and missing response descriptions."""

    def __init__(self, prefix: str = "/api/v1") -> None:
        self.prefix = prefix

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        """Called by apispec for every path flask-smorest registers."""
        for method, operation in (operations or {}).items():
            if method not in OPERATION_METHODS or not isinstance(operation, dict):
                continue
            operation.setdefault("operationId", operation_id(method, path or "", self.prefix))
            for status, response in (operation.get("responses") or {}).items():
                if isinstance(response, dict) and "$ref" not in response and "description" not in response:
                    response["description"] = _phrase(status)


def _phrase(status) -> str:
    try:
        return HTTPStatus(int(status)).phrase
    except ValueError:  # "default", "2XX"
        return "Response"
