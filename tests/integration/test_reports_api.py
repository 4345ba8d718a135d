"""Event reports and the period summary over HTTP, on a real database (SQLite, and PostgreSQL when set).

The episode is built through the real ingest, rules engine and outbox (tests/support/episode.py),
so every figure is known: readings arrive 30 s after measurement, the first SMS of an event is
handed to the provider 2 s later and one every half second after it.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from service.db import schema
from service.http.auth import Caller
from service.http.report_links import LINK_TTL_S, report_paths
from tests.support.api import make_harness
from tests.support.episode import ARRIVAL_S, DISPATCH_S, SPACING_S, warned_flood

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)


@pytest.fixture
def harness(database_url):
    harness = make_harness(database_url)
    yield harness
    harness.services.engine.dispose()


@pytest.fixture
def episode(harness):
    return warned_flood(harness.services, T0)


def report(harness, alert_id, role="viewer", **kwargs):
    answer = harness.call("GET", f"/api/v1/alerts/{alert_id}/report", role=role, **kwargs)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer


def test_the_lead_time_runs_from_the_first_resident_sms_to_the_awas_reading(harness, episode):
    doc = report(harness, episode.alert_id).get_json()
    first_sent = episode.at(10) + timedelta(seconds=ARRIVAL_S + DISPATCH_S)
    assert doc["lead_time_s"] == (episode.at(30) - first_sent).total_seconds() == 1168.0
    lead = doc["lead_time"]
    assert (lead["status"], lead["reference"], lead["late_readings"]) == ("before", "awas", False)
    assert (lead["head_start_s"], lead["reading_delay_s"], lead["dispatch_delay_s"]) == (1200.0, ARRIVAL_S, DISPATCH_S)
    assert set(doc) >= {"alert", "station", "events", "sms", "lead_time_s"}
    assert doc["alert"]["id"] == episode.alert_id and doc["alert"]["state"] == "closed"
    assert doc["station"]["river"] == "Sungai Pongkeru"
    assert doc["station"]["thresholds"] == {"water_level": {"waspada": 1.8, "siaga": 2.4, "awas": 3.0}}


def test_each_event_has_its_warning_delays_and_sms_counts_by_state(harness, episode):
    doc = report(harness, episode.alert_id).get_json()
    types = [(e["type"], e["level"]) for e in doc["events"]]
    assert types == [("raised", "waspada"), ("escalated", "siaga"), ("escalated", "awas"),
                     ("deescalated", "waspada"), ("cleared", "normal")]
    for event in doc["events"]:
        sent = episode.sent.get(event["id"], [])
        reading_ts = datetime.fromisoformat(event["reading"]["ts"].replace("Z", "+00:00"))
        if not sent:
            assert event["warning_delay_s"] == {"first": None, "last": None} and event["sms_total"] == 0
            continue
        assert event["warning_delay_s"] == {"first": (sent[0] - reading_ts).total_seconds(),
                                            "last": (sent[-1] - reading_ts).total_seconds()}
        # Six residents of Laskap, Pongkeru and the whole kecamatan, and the staff member; not Wotu.
        assert event["sms_total"] == 7 and len(sent) == 7
        assert event["sms"]["delivered"] == 6 and event["sms"]["failed"] == 1
        assert event["reading_delay_s"] == ARRIVAL_S
    assert doc["events"][0]["warning_delay_s"]["last"] == ARRIVAL_S + DISPATCH_S + 6 * SPACING_S


def test_sms_are_counted_per_desa_and_delivery_state(harness, episode):
    sms = report(harness, episode.alert_id).get_json()["sms"]
    places = {(p["kecamatan"], p["desa"]): (p["messages"], p["by_state"]["delivered"], p["by_state"]["failed"])
              for p in sms["places"]}
    # Four resident messages (waspada, siaga, awas, all-clear) each.
    assert places == {("Malili", "Laskap"): (12, 12, 0), ("Malili", "Pongkeru"): (8, 4, 4), ("Malili", None): (4, 4, 0)}
    assert [p["desa"] for p in sms["places"]] == ["Laskap", "Pongkeru", None]
    assert sms["by_audience"] == {"resident": 24, "staff": 4, "unknown": 0}
    assert sms["by_kind"] == {"all_clear": 7, "warning": 21}
    assert sms["total"] == 28 and sms["by_state"]["delivered"] == 24
    assert [(f["phone"], f["error_code"], f["desa"]) for f in sms["failures"]] == [("+62812****0004", "30003", "Pongkeru")] * 4


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_phone_numbers_are_masked_for_every_role(harness, episode, role):
    json_text = report(harness, episode.alert_id, role=role).get_data(as_text=True)
    html = report(harness, episode.alert_id, role=role, headers={"Accept": "text/html"}).get_data(as_text=True)
    for phone in episode.phones:
        assert phone not in json_text and phone[1:] not in json_text
        assert phone not in html and phone[1:] not in html
    assert "+62812****0004" in json_text


def test_who_may_read_a_report(harness, episode):
    path = f"/api/v1/alerts/{episode.alert_id}/report"
    assert harness.call("GET", path, role=None).status_code == 401
    assert harness.call("GET", path, role="revoked").status_code == 401
    assert harness.call("GET", path, role="gateway").status_code == 403
    assert harness.call("GET", path + ".html", role=None).status_code == 401
    assert harness.call("GET", path + ".html", role="gateway").status_code == 403
    missing = harness.call("GET", "/api/v1/alerts/999999/report", role="viewer")
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    page = harness.call("GET", "/api/v1/alerts/999999/report.html", role="viewer")
    assert page.status_code == 404 and page.content_type.startswith("text/html")


def test_the_page_is_html_without_script_and_is_never_cached(harness, episode):
    by_accept = report(harness, episode.alert_id, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    by_path = harness.call("GET", f"/api/v1/alerts/{episode.alert_id}/report.html", role="viewer")
    assert by_accept.content_type.startswith("text/html") and by_path.status_code == 200
    html = by_path.get_data(as_text=True)
    assert "<script" not in html.lower() and "<svg" in html and 'lang="id"' in html
    assert "Laporan Kejadian" in html and "Sungai Pongkeru" in html and "WITA" in html
    assert by_path.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in by_path.headers["Content-Security-Policy"]
    assert by_path.headers["Referrer-Policy"] == "no-referrer"
    english = harness.call("GET", f"/api/v1/alerts/{episode.alert_id}/report.html?lang=en", role="viewer")
    assert 'lang="en"' in english.get_data(as_text=True) and "Event report" in english.get_data(as_text=True)
    wrong = harness.call("GET", f"/api/v1/alerts/{episode.alert_id}/report.html?lang=fr", role="viewer")
    assert wrong.status_code == 422


def _ticket_path(harness, alert_id, role="viewer", now=None):
    t = schema.api_tokens
    with harness.services.engine.connect() as conn:
        row = conn.execute(sa.select(t.c.id, t.c.name, t.c.role).where(t.c.name == f"test {role}")).one()
    return report_paths(harness.services.engine, Caller(row.id, row.name, row.role), [alert_id],
                        now or harness.services.clock())[str(alert_id)]


def test_a_dashboard_ticket_opens_that_one_report_for_a_while(harness, episode):
    path = _ticket_path(harness, episode.alert_id)
    assert harness.client.get(path).status_code == 200
    assert harness.client.get(path + "&lang=en").status_code == 200
    ticket = path.split("ticket=")[1]
    # Not another alert's report, not the JSON API, not after it expired, not tampered with.
    other = harness.client.get(f"/api/v1/alerts/{episode.alert_id + 1}/report.html?ticket={ticket}")
    assert other.status_code == 401 and "WWW-Authenticate" in other.headers
    assert harness.client.get(f"/api/v1/alerts/{episode.alert_id}/report?ticket={ticket}").status_code == 401
    old = _ticket_path(harness, episode.alert_id, now=harness.services.clock() - timedelta(seconds=LINK_TTL_S + 5))
    assert harness.client.get(old).status_code == 401
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert harness.client.get(forged).status_code == 401
    token = harness.tokens["viewer"]
    assert harness.client.get(f"/api/v1/alerts/{episode.alert_id}/report.html?token={token}").status_code == 401


def test_a_revoked_tokens_tickets_die_with_it(harness, episode):
    path = _ticket_path(harness, episode.alert_id, role="operator")
    assert harness.client.get(path).status_code == 200
    with harness.services.engine.begin() as conn:
        conn.execute(sa.update(schema.api_tokens).where(schema.api_tokens.c.name == "test operator")
                     .values(revoked_at=harness.services.clock()))
    assert harness.client.get(path).status_code == 401


def test_a_replayed_historic_flood_explains_its_lead_time(harness):
    replay_delay = 6 * 3600.0  # readings of a flood six hours ago, arriving now
    episode = warned_flood(harness.services, T0 - timedelta(hours=3), arrival_s=replay_delay)
    doc = report(harness, episode.alert_id).get_json()
    lead = doc["lead_time"]
    assert doc["lead_time_s"] < 0 and lead["status"] == "after" and lead["late_readings"] is True
    assert lead["reading_delay_s"] == replay_delay and lead["head_start_s"] == 1200.0
    assert doc["lead_time_s"] == lead["head_start_s"] - lead["reading_delay_s"] - lead["dispatch_delay_s"]
    html = report(harness, episode.alert_id, headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "Data pos tiba 6 jam 0 mnt sesudah diukur" in html
    assert "20 mnt sebelum AWAS" in html  # what the thresholds would have given with live data


def test_a_report_of_a_station_without_readings_or_sms(harness):
    now = harness.services.clock()
    with harness.services.engine.begin() as conn:
        alert_id = conn.execute(sa.insert(schema.alerts).values(
            station_id="AGK-ANGKONA", kind="offline", level="waspada", peak_level="waspada", state="active",
            opened_at=now - timedelta(hours=1))).inserted_primary_key[0]
    doc = report(harness, alert_id).get_json()
    assert doc["lead_time_s"] is None and doc["sms"]["total"] == 0 and doc["events"] == []
    assert "<svg" in report(harness, alert_id, headers={"Accept": "text/html"}).get_data(as_text=True)


def test_the_openapi_document_describes_the_reports(harness):
    spec = harness.call("GET", "/api/v1/openapi.json", role=None).get_json()
    get = spec["paths"]["/api/v1/alerts/{alert_id}/report"]["get"]
    assert set(get["responses"]["200"]["content"]) == {"application/json", "text/html"}
    assert "lead_time_s" in spec["components"]["schemas"]["AlertReport"]["properties"]
    assert "warning_delay_s" in spec["components"]["schemas"]["ReportEvent"]["properties"]
    assert "text/html" in spec["paths"]["/api/v1/alerts/{alert_id}/report.html"]["get"]["responses"]["200"]["content"]
    summary = spec["paths"]["/api/v1/reports"]["get"]
    assert set(summary["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert {p["name"] for p in summary["parameters"]} >= {"from", "to", "format"}
    assert "reportTicket" in spec["components"]["securitySchemes"]


def _summary(harness, **params):
    return harness.call("GET", "/api/v1/reports", role="viewer", query_string=params)


def test_the_period_summary_counts_episodes_warnings_and_the_median_lead_time(harness, episode):
    with harness.services.engine.begin() as conn:  # a drill in the same period is not an episode of the regency
        conn.execute(sa.insert(schema.alerts).values(station_id="KLN-WOTU", kind="water_level", level="normal",
                                                     peak_level="awas", state="closed", opened_at=episode.at(5),
                                                     closed_at=episode.at(50), exercise=True))
    answer = _summary(harness, **{"from": (T0 - timedelta(days=1)).isoformat(), "to": (T0 + timedelta(days=1)).isoformat()})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    doc = answer.get_json()
    totals = doc["totals"]
    assert (totals["episodes"], totals["by_peak_level"]["awas"]) == (1, 1)
    assert (totals["warnings_sent"], totals["warnings_delivered"], totals["residents_warned"]) == (18, 15, 6)
    assert totals["median_lead_time_s"] == 1168.0
    (row,) = doc["episodes"]
    assert (row["alert_id"], row["peak_value"], row["peak_level"], row["unit"]) == (episode.alert_id, 3.1, "awas", "m")
    assert doc["stations"][0]["station_id"] == "PKR-LASKAP" and doc["stations"][0]["peak_value"] == 3.1
    later = _summary(harness, **{"from": (T0 + timedelta(days=1)).isoformat(), "to": (T0 + timedelta(days=2)).isoformat()})
    assert later.get_json()["totals"]["episodes"] == 0 and later.get_json()["totals"]["median_lead_time_s"] is None


def test_the_period_summary_as_csv(harness, episode):
    for answer in (_summary(harness, format="csv"),
                   harness.call("GET", "/api/v1/reports", role="viewer", headers={"Accept": "text/csv"})):
        assert answer.status_code == 200 and answer.content_type.startswith("text/csv")
        assert "attachment" in answer.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
        (row,) = rows
        assert row["station_id"] == "PKR-LASKAP" and row["lead_time_s"] == "1168.0" and row["lead_time_min"] == "19.5"
        local = episode.at(10).astimezone(harness.services.settings.tz).strftime("%Y-%m-%d %H:%M")
        assert row["opened_wita"] == local and row["late_readings"] == "no"


def test_the_period_must_be_a_real_one(harness):
    now = harness.services.clock()
    backwards = _summary(harness, **{"from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()})
    assert backwards.status_code == 422 and backwards.get_json()["errors"][0]["field"] == "from"
    too_long = _summary(harness, **{"from": (now - timedelta(days=400)).isoformat(), "to": now.isoformat()})
    assert too_long.status_code == 422 and too_long.get_json()["errors"][0]["field"] == "to"
    naive = _summary(harness, **{"from": "2026-11-01T00:00:00"})
    assert naive.status_code == 422
    assert harness.call("GET", "/api/v1/reports", role=None).status_code == 401
    assert harness.call("GET", "/api/v1/reports", role="gateway").status_code == 403
    default = _summary(harness).get_json()
    span = datetime.fromisoformat(default["to"].replace("Z", "+00:00")) - datetime.fromisoformat(
        default["from"].replace("Z", "+00:00"))
    assert span == timedelta(days=31)


def test_the_dashboard_session_links_active_and_recently_closed_alerts_to_their_reports(harness, episode):
    session = harness.call("GET", "/dashboard/session.json", role="viewer").get_json()
    assert [a["id"] for a in session["recently_closed"]] == [episode.alert_id]
    path = session["reports"][str(episode.alert_id)]
    assert path.startswith(f"/api/v1/alerts/{episode.alert_id}/report.html?ticket=")
    assert harness.client.get(path).status_code == 200
    assert "reports" not in harness.call("GET", "/dashboard/public.json", role=None).get_json()
