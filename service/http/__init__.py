"""The HTTP side: the staff API (``/api/v1``), CAP, operations endpoints and plugged-in blueprints.

How to add a route (for the other modules)
------------------------------------------
1. Write a module exposing either ``blp`` (a module-level blueprint) or
   ``create_blueprint(services) -> Blueprint``. Use a ``flask_smorest.Blueprint`` for
   anything under ``/api/v1`` (it lands in the OpenAPI document); a plain ``flask.Blueprint``
   for pages and webhooks (e.g. the dashboard, Twilio). Give API blueprints
   ``url_prefix="/api/v1/..."``.
2. Import it in ``_blueprints`` below and add its blueprint(s) to the list, in the place it
   should have in the OpenAPI document. A module that fails to import stops the app: no
   route is ever left out silently.
3. In a view:
   - its declaration: ``@operation(blp, role, status, Schema, query=Args, body=In, conflict=True)``
     from ``service.http.routes`` (the role, ``"viewer"|"operator"|"admin"|"gateway"``, is applied
     outermost, so a caller without a token gets 401/403 before the request is validated);
     anything else it documents by hand (``@blp.doc``, another ``alt_response``) stands below it;
   - the wired services: ``services()`` from this package (``current_app.extensions["ews"]``);
     the caller for audit: ``current_actor()`` from ``service.http.auth``;
   - errors: ``raise Problem(409, "why")`` or ``raise field_error("phone", "is not a number")``
     from ``service.http.errors``; webargs validation failures become 422 problems with
     ``errors: [{field, message}]`` by themselves, and so do a ``FieldError`` (422 naming its field)
     and a ``Conflict`` (409) from alerts/errors.py that a view lets through;
   - lists: ``@paged_list(blp, role, Args, ItemSchema, order=..., to_json=...)`` from
     ``service.http.routes`` on a view that returns the query of what to list (``where_equal``
     for its equality filters); ``PageArgs`` and ``keyset_page`` from ``service.http.pagination``
     for a list that reads more in the same connection;
   - a read: ``with reading() as conn:``; a change: ``with changing() as (conn, now):`` (its
     transaction and time), both from this package; ``missing="No thing 7."`` makes a
     ``LookupError`` in the block (what is asked for is not there) a 404 saying so;
   - audit: ``service.audit.record(conn, current_actor(), "update", "subscriber", id, before, after, now)``
     in the same transaction as the change.
   - times: ``service.http.schemas.UTCDateTime`` field (RFC 3339 with ``Z``).

Example::

    from flask.views import MethodView
    from flask_smorest import Blueprint
    from service.http import reading
    from service.http.routes import operation

    blp = Blueprint("alerts", __name__, url_prefix="/api/v1/alerts", description="Alerts")

    @blp.route("/<int:alert_id>")
    class AlertView(MethodView):
        @operation(blp, "viewer", 200, AlertSchema)
        def get(self, alert_id):
            with reading(missing=f"No alert {alert_id}.") as conn:
                ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, current_app
from flask_smorest import Api
from flask_smorest import Blueprint as ApiBlueprint
from werkzeug.routing import IntegerConverter

from service.db.engine import begin_reads_only, end_reads_only
from service.http.answers import HeldBeneath
from service.http.auth import KnownTokens
from service.http.errors import ProblemErrorSchema, not_found_as_404, register_error_handlers
from service.http.openapi import DocumentConventions

API_PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).parent / "static"


class BoundedIntConverter(IntegerConverter):
    """werkzeug's ``int`` converter, limited to 0..2**63-1 unless the route says otherwise."""

    def __init__(self, map, *args, **kwargs):  # noqa: A002 - werkzeug's signature
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


class EwsApi(Api):
    """flask-smorest's Api, answering errors as RFC 9457 problem documents."""

    ERROR_SCHEMA = ProblemErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = "DEFAULT_ERROR"

    def _register_error_handlers(self):
        register_error_handlers(self._app)

    def _register_responses(self):
        # The same components flask-smorest registers, with our error media type.
        self.DEFAULT_RESPONSE_CONTENT_TYPE = "application/problem+json"
        try:
            super()._register_responses()
        finally:
            self.DEFAULT_RESPONSE_CONTENT_TYPE = "application/json"

    def _register_pagination_header(self):
        # Our lists page with cursors in the body (service.http.pagination), not flask-smorest's
        # X-Pagination header: registering it would leave an unused component in the document.
        pass


def services():
    """The ``Services`` of the running app (inside a request or app context)."""
    return current_app.extensions["ews"]


@contextlib.contextmanager
def reading(missing: str | None = None) -> Iterator:
    """A read through the API: its connection; with ``missing``, a ``LookupError`` in the block is a 404 saying so."""
    with services().engine.connect() as conn, _missing_as_404(missing):
        yield conn


@contextlib.contextmanager
def changing(missing: str | None = None) -> Iterator[tuple]:
    """A change made through the API: its transaction and the one time it is made at, ``(conn, now)``.

    With ``missing``, a ``LookupError`` in the block (what is changed is not there) is a 404 saying so.
    """
    svc = services()
    now = svc.clock()
    with svc.engine.begin() as conn, _missing_as_404(missing):
        yield conn, now


def _missing_as_404(missing: str | None):
    return not_found_as_404(missing) if missing is not None else contextlib.nullcontext()


def _read_only_for_safe_methods(app: Flask) -> None:
    """GET and HEAD requests read without taking SQLite's write lock (see service.db.engine)."""
    from flask import g, request

    @app.before_request
    def _enter_read_only():
        if request.method in ("GET", "HEAD"):
            g.ews_reads_only = begin_reads_only()

    @app.teardown_request
    def _leave_read_only(_exc=None):
        token = g.pop("ews_reads_only", None)
        if token is not None:
            end_reads_only(token)


def create_app(services_) -> Flask:
    """Build the Flask app serving the API, CAP, operations endpoints and plugged-in blueprints."""
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path=f"{API_PREFIX}/static")
    # Every <int:...> path parameter is a database id: bound it to a signed 64-bit integer so a
    # huge number is a 404, not a driver overflow.
    app.url_map.converters["int"] = BoundedIntConverter
    app.extensions["ews"] = services_
    app.extensions["ews_known_tokens"] = KnownTokens()
    app.wsgi_app = app.extensions["ews_held_beneath"] = HeldBeneath(app.wsgi_app, app.extensions["ews_known_tokens"])
    app.json.sort_keys = False
    _read_only_for_safe_methods(app)
    app.config.update(
        API_TITLE="EWS Luwu Timur",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_REDOC_PATH="/docs",
        OPENAPI_REDOC_URL=f"{API_PREFIX}/static/redoc/redoc.standalone.js",
        MAX_CONTENT_LENGTH=4 * 1024 * 1024,
        API_SPEC_OPTIONS={
            "info": {
                "description": "Staff API of the BPBD Luwu Timur flood and heavy-rain early-warning service. "
                "Every request carries `Authorization: Bearer <token>`; errors are "
                "`application/problem+json` (RFC 9457).",
                "contact": {"name": "BPBD Kabupaten Luwu Timur", "url": services_.settings.public_url},
                "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
            },
            # Paths carry /api/v1 themselves, so the server is the service's public root.
            "servers": [{"url": services_.settings.public_url, "description": "this service (EWS_PUBLIC_URL)"}],
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer"},
                    # A dashboard link to one printable report (service.http.report_links).
                    "reportTicket": {"type": "apiKey", "in": "query", "name": "ticket"},
                },
            },
            "security": [{"bearerAuth": []}],
        },
    )
    api = EwsApi(app, spec_kwargs={"extra_plugins": [DocumentConventions(API_PREFIX)]})
    app.extensions["ews_api"] = api
    for blueprint in _blueprints(services_):
        if isinstance(blueprint, ApiBlueprint):
            api.register_blueprint(blueprint)
        else:
            app.register_blueprint(blueprint)
    return app


def _blueprints(services_) -> list:
    """Every blueprint of the app, in registration (and OpenAPI document) order."""
    # Imported here, not at the top: the route modules import ``services`` from this package.
    from service import web
    from service.http import (
        alerts_api,
        audit_api,
        broadcasts_api,
        cap_routes,
        dead_letters,
        exercises_api,
        maintenance_api,
        notifications_api,
        ops,
        readings,
        reports_api,
        sirens_api,
        stations,
        subscribers_api,
        tokens_api,
        twilio_webhooks,
    )

    return [
        stations.blp, readings.blp, dead_letters.blp, tokens_api.blp, audit_api.blp, reports_api.blp,
        exercises_api.blp, maintenance_api.blp, sirens_api.blp, ops.blp, cap_routes.blp, *alerts_api.blp,
        subscribers_api.blp, notifications_api.blp, broadcasts_api.blp, twilio_webhooks.blp, web.create_blueprint(services_),
    ]
