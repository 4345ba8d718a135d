"""Event reports and the period summary (spec section 14).

- ``GET /api/v1/alerts/{id}/report``: the report as JSON; with ``Accept: text/html`` the
  printable page (viewer and up, Bearer token).
- ``GET /api/v1/alerts/{id}/report.html``: the printable page, with a Bearer token or a
  short-lived ``ticket`` the dashboard puts in its links (``service.http.report_links``).
- ``GET /api/v1/reports?from=&to=``: the regency's episodes over a period, JSON or CSV.

Phone numbers are masked in every report, whoever asks. The page has no script, loads
nothing from elsewhere (a Content-Security-Policy says so to the browser) and is never
cached or indexed.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from alerts.messages import tz_word
from service import report_summary, reports
from service.http import reading, services
from service.http.auth import authenticate, check_role
from service.http.errors import Problem, field_error
from service.http.report_links import verify
from service.http.routes import operation
from service.http.report_schemas import (
    AlertReportSchema,
    HtmlReportArgs,
    PeriodSummarySchema,
    ReportArgs,
    SummaryArgs,
)
from service.web import report_page

blp = Blueprint("reports", __name__, url_prefix="/api/v1",
                description="Event reports with the warning lead time, and the period summary (spec section 14)")

DEFAULT_PERIOD = timedelta(days=31)
MAX_PERIOD = timedelta(days=366)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    # No script, no frame, nothing fetched from anywhere: the page is its own inline CSS and SVG.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}
HTML_CONTENT = {"text/html": {"schema": {"type": "string"},
                              "example": "<!doctype html><html lang=\"id\">...</html>"}}


def _with_headers(response: Response) -> Response:
    response.headers.update(PAGE_HEADERS)
    return response


def _report(alert_id: int):
    with reading(missing=f"No alert {alert_id}.") as conn:
        return reports.alert_report(conn, alert_id, services().clock())


def _other_language_url(lang: str) -> str:
    """This request's address with the other language (the ticket, if any, kept)."""
    args = request.args.to_dict()
    args["lang"] = "en" if lang == "id" else "id"
    return request.path + "?" + urlencode(args)


def _page(alert_id: int, lang: str) -> Response:
    doc, chart = _report(alert_id)
    html = report_page.render(doc, chart, lang, services().settings.tz, _other_language_url(lang))
    return _with_headers(Response(html, mimetype="text/html"))


def _wants(*types: str) -> str | None:
    """The media type of ``types`` the client prefers (the first on a tie or ``*/*``)."""
    return request.accept_mimetypes.best_match(types, default=types[0])


@blp.route("/alerts/<int:alert_id>/report")
class AlertReport(MethodView):
    @operation(blp, "viewer", 200, AlertReportSchema, query=ReportArgs)
    @blp.doc(responses={"200": {"content": {"application/json": {"schema": AlertReportSchema}, **HTML_CONTENT}}})
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, args, alert_id):
        """The event report of an alert: lead time, warning delays, SMS per desa and state.

        JSON by default; with `Accept: text/html` the printable page (Bahasa Indonesia,
        `lang=en` for English). Phone numbers are masked for every role.
        """
        if _wants("application/json", "text/html") == "text/html":
            return _page(alert_id, args["lang"])
        return _report(alert_id)[0]


def _page_caller(ticket: str | None, alert_id: int) -> None:
    """Authenticate the page: a Bearer header as anywhere in the API, else a link ticket for this alert."""
    if request.headers.get("Authorization") or not ticket:
        check_role(authenticate(), ("viewer",))
        return
    svc = services()
    verify(svc.engine, ticket, alert_id, svc.clock())


@blp.route("/alerts/<int:alert_id>/report.html")
class AlertReportPage(MethodView):
    @blp.arguments(HtmlReportArgs, location="query")
    @blp.doc(security=[{"bearerAuth": []}, {"reportTicket": []}],
             responses={"200": {"description": "the printable report", "content": HTML_CONTENT},
                        "401": {"description": "no token, or a bad, expired or revoked ticket",
                                "content": HTML_CONTENT},
                        "403": {"description": "the token's role may not read reports", "content": HTML_CONTENT},
                        "404": {"description": "no such alert", "content": HTML_CONTENT}})
    def get(self, args, alert_id):
        """The printable event report (no JavaScript; A4), for a Bearer token or a dashboard link `ticket`.

        Roles: admin, operator, viewer. A ticket opens this one report for 15 minutes.
        """
        try:
            _page_caller(args.get("ticket"), alert_id)
            return _page(alert_id, args["lang"])
        except Problem as problem:
            html = report_page.render_problem(problem.status, problem.detail or "", args["lang"])
            response = Response(html, status=problem.status, mimetype="text/html")
            response.headers.update(problem.headers)
            return _with_headers(response)


def _period(args, now):
    end = args.get("to") or now
    start = args.get("from") or end - DEFAULT_PERIOD
    if start >= end:
        raise field_error("from", "must be before to")
    if end - start > MAX_PERIOD:
        raise field_error("to", "a period is at most 366 days")
    return start, end


@blp.route("/reports")
class PeriodReport(MethodView):
    @operation(blp, "viewer", 200, PeriodSummarySchema, query=SummaryArgs)
    @blp.doc(responses={"200": {"content": {"application/json": {"schema": PeriodSummarySchema},
                                            "text/csv": {"schema": {"type": "string"}}}}})
    def get(self, args):
        """The regency's flood and rain episodes over a period: peaks, warnings sent and delivered, median lead time.

        `from` (inclusive) and `to` (exclusive) default to the last 31 days; at most 366 days.
        CSV (one row per episode, times in WITA) with `format=csv` or `Accept: text/csv`.
        """
        svc = services()
        now = svc.clock()
        start, end = _period(args, now)
        with reading() as conn:
            doc = report_summary.period_summary(conn, start, end, now, svc.settings.timezone)
        wanted = args.get("format") or ("csv" if _wants("application/json", "text/csv") == "text/csv" else "json")
        if wanted == "csv":
            zone = svc.settings.tz
            body = report_summary.summary_csv(doc, zone, tz_word(zone, start))
            name = f"ews-luwu-timur-{start.astimezone(zone):%Y%m%d}-{end.astimezone(zone):%Y%m%d}.csv"
            return Response(body, mimetype="text/csv", headers={
                "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
        return doc
