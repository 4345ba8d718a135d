"""The operations dashboard: ``GET /`` (spec section 6), its static files and its own JSON.

Routes (a plain Flask blueprint, registered by ``service.http.create_app``):

- ``GET /``: the page (plain JS, no build step; libraries vendored in ``static/vendor``).
- ``GET /dashboard/static/...``: the page's files.
- ``GET /dashboard/public.json``: stations, levels, latest values, thresholds and active public
  alerts with SMS counts - no token, no names or phone numbers.
- ``GET /dashboard/stations/<id>/series.json?hours=24``: chart data of one station (public).
- ``GET /dashboard/session.json``: with a bearer token, who the caller is, what they may do,
  SMS counts of every active alert (also the staff-only kinds), the alerts closed in the last
  7 days, a short-lived link to each of those alerts' printable report, and what maintenance
  held back from residents in the last 24 hours.

The staff view reads alerts from ``GET /api/v1/alerts``, maintenance windows from
``GET /api/v1/maintenance`` and the SMS queue from ``GET /api/v1/notifications/queue``; it
acknowledges, closes and starts or ends maintenance through the same API (which checks the role
and audits); see docs/dashboard.md.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, jsonify, request, send_from_directory

from service.http.answers import Commits, SharedAnswers, respond
from service.http.auth import authenticate, check_role
from service.http.errors import Problem, field_error
from service.http.report_links import report_paths
from service.web import data, staff_data

STATIC_DIR = Path(__file__).parent / "static"
CAN_ACK = ("operator", "admin")
# What each role may do from the dashboard (the API checks it again): spec sections 2 and 10.
ACTIONS = {"ack": CAN_ACK, "close": CAN_ACK, "maintenance": CAN_ACK}


# The public document is one answer shared by every caller (service/http/answers.py): everyone
# may poll it without a token, and building it takes several queries per station. Its mark
# (data.public_fingerprint: readings, alerts, exercises, registry, sirens, maintenance) is asked
# once a second, or at the next request after this process committed anything; the document is
# rebuilt when the mark moved or it is a second old (times in it age: rain windows, sirens, windows running out).
SNAPSHOT_SECONDS = 1.0
PUBLIC_HEADERS = {"Cache-Control": "no-store"}


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def create_blueprint(services) -> Blueprint:
    """The dashboard blueprint for ``services`` (engine, clock, settings)."""
    bp = Blueprint("web", __name__, static_folder=str(STATIC_DIR), static_url_path="/dashboard/static")
    views = _Views(services)
    bp.add_url_rule("/", "index", _index, methods=["GET"])
    bp.add_url_rule("/dashboard/public.json", "public_json", views.public_json, methods=["GET"])
    bp.record_once(lambda state: state.app.extensions["ews_held_beneath"].serve(
        "/dashboard/public.json", views.public, lambda _environ: None, PUBLIC_HEADERS))
    bp.add_url_rule("/dashboard/stations/<station_id>/series.json", "series_json", views.series_json, methods=["GET"])
    bp.add_url_rule("/dashboard/session.json", "session_json", views.session_json, methods=["GET"])
    return bp


def _index():
    """The dashboard page."""
    response = send_from_directory(STATIC_DIR, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    # The token may arrive in the address (?token=...): never leak it to other sites.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


class _Views:
    """The dashboard's JSON views, over one ``services``."""

    def __init__(self, services):
        self.services = services
        self.public = SharedAnswers(SNAPSHOT_SECONDS, max_age=SNAPSHOT_SECONDS, commits=Commits.of(services.engine))

    def now(self):
        """The service clock's now."""
        return self.services.clock()

    def tz_name(self) -> str:
        """The deployment's time zone name."""
        return self.services.settings.timezone

    def public_json(self):
        """Stations and active public alerts, for everyone (one shared answer, see SNAPSHOT_SECONDS)."""
        answer = self.public.answer(None, self._public_mark, lambda: current_app.json.dumps(
            data.public_view(self.services.engine, self.now(), self.tz_name())).encode())
        return respond(answer, PUBLIC_HEADERS)

    def _public_mark(self) -> tuple:
        """What the public document shows may have changed when this does."""
        with self.services.engine.connect() as conn:
            return data.public_fingerprint(conn)

    def series_json(self, station_id: str):
        """The last hours of one station's watched metric, its thresholds and alert events."""
        raw = request.args.get("hours", "24")
        if not raw.isdigit() or int(raw) not in data.SERIES_HOURS:
            raise field_error("hours", f"must be one of {', '.join(map(str, data.SERIES_HOURS))}")
        doc = data.station_series(self.services.engine, station_id, self.now(), int(raw), public=True)
        if doc is None:
            raise Problem(404, f"There is no station {station_id!r}.")
        return _no_store(jsonify(doc))

    def session_json(self):
        """Who holds the bearer token and what the dashboard may offer them."""
        caller = authenticate()
        check_role(caller, ("viewer",))
        engine = self.services.engine
        with engine.connect() as conn:
            alerts = data.active_alerts(conn, public=False)
            closed = data.recently_closed(conn, self.now())
            held = staff_data.suppressed(conn, self.now())
        return _no_store(jsonify({
            "name": caller.name,
            "role": caller.role,
            "can_ack": caller.role in CAN_ACK,
            "may": {action: caller.role in roles for action, roles in ACTIONS.items()},
            "suppressed": held,
            "alerts": alerts,
            "recently_closed": closed,
            # Links to each alert's printable report, with a ticket valid 15 minutes (a plain
            # link cannot carry the Bearer header): see service/http/report_links.py.
            "reports": report_paths(engine, caller, [a["id"] for a in alerts + closed], self.now()),
        }))
