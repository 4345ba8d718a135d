"""The printable event report: HTML with an inline SVG chart, no JavaScript, A4.

``render(doc, series, lang, zone)`` takes the report document of ``service.reports`` (the
same as the JSON answer: one source for both) and its chart series; the chart's geometry is
``alerts.chart``. Texts are ``config/report/{id,en}.toml``; the page is the Jinja template
``templates/report.html`` (autoescaped). Phone numbers never reach this module unmasked.
"""

from __future__ import annotations

import functools
from datetime import tzinfo
from pathlib import Path

import jinja2

from alerts.chart import build_chart
from service.reports import Series, parse_ts
from service.web.report_texts import Texts

TEMPLATES = Path(__file__).parent / "templates"
LEVEL_EVENTS = ("raised", "escalated", "deescalated")
WAITING = ("pending", "sending", "unknown")
FAILED = ("failed", "undelivered")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


# --- parts of the page -------------------------------------------------------------------------


def station_view(doc: dict, t: Texts) -> dict:
    """Name, river, place, areas and thresholds as the page shows them."""
    station = doc["station"]
    areas = [a.get("desa") or t("station.whole_kecamatan", kecamatan=a.get("kecamatan") or "")
             for a in station.get("areas") or []]
    place = ", ".join(p for p in (station.get("desa"), station.get("kecamatan") and f"Kec. {station['kecamatan']}") if p)
    marks = []
    water = station["thresholds"].get("water_level") or {}
    if water:
        marks.append(" \u00b7 ".join(f"{t.level(lv)} {t.value(v, 'm')}" for lv, v in water.items()))
    rain = station["thresholds"].get("rainfall") or {}
    if rain:
        windows = [f"{w} " + " / ".join(t.number(v, 0) for v in levels.values()) for w, levels in rain.items()]
        marks.append("; ".join(windows) + f" mm ({t('station.levels')})")
    return {"name": station.get("name") or station["id"], "id": station["id"], "river": station.get("river") or "-",
            "place": place or "-", "areas": ", ".join(areas) or "-", "thresholds": marks,
            "notify_from": t("station.notify_from", level=t.level(station.get("notify_from")).upper())}


def lead_view(doc: dict, t: Texts) -> dict:
    """The lead time figure and the sentences that explain it."""
    lead = doc["lead_time"]
    status, reference = lead["status"], lead["reference"]
    figure = t.signed_duration(lead["seconds"], precise=True) if lead["seconds"] is not None else t("figures.lead_none")
    if status in ("before", "after"):
        sentences = [t(f"lead.{status}_{reference}", lead=t.duration(lead["seconds"]),
                       at=t.time(lead["reached_at"], tz=True))]
    else:
        sentences = [t(f"lead.{status}")]
    words = {"reference": t(f"lead.reference_{reference}"), "head_start": t.signed_duration(lead["head_start_s"]),
             "delay": t.duration(lead["reading_delay_s"]), "dispatch": t.duration(lead["dispatch_delay_s"])}
    if lead["late_readings"]:
        sentences.append(t("lead.late", **words))
    if status in ("before", "after") and None not in (lead["head_start_s"], lead["reading_delay_s"],
                                                     lead["dispatch_delay_s"]):
        sentences.append(t("lead.parts", **words))
    return {"figure": figure, "status": status, "late": lead["late_readings"], "sentences": sentences}


def figures_view(doc: dict, t: Texts) -> dict:
    """The key figures: episode, duration, peak, resident SMS."""
    alert, series = doc["alert"], doc["series"]
    opened, closed = parse_ts(alert["opened_at"]), parse_ts(alert["closed_at"])
    until = closed or parse_ts(doc["generated_at"])
    peak = series.get("peak") or {}
    resident = [p["by_state"] for p in doc["sms"]["places"]]
    handed = sum(sum(n for s, n in states.items() if s not in WAITING) for states in resident)
    delivered = sum(states.get("delivered", 0) for states in resident)
    failed = sum(states.get(s, 0) for states in resident for s in FAILED)
    return {
        "period": f"{t.time(opened, tz=True)} \u2013 {t.time(closed, tz=True) if closed else t('figures.until_now')}",
        "duration": t.duration((until - opened).total_seconds()) if until else "-",
        "peak": f"{t.level(alert['peak_level']).upper()} \u00b7 {t.value(peak.get('value'), series['unit'])}",
        "peak_time": t.time(peak.get("ts"), tz=True) if peak.get("ts") else "",
        "residents": t("figures.residents_value", sent=handed, delivered=delivered),
        "failed": failed,
    }


def _event_text(event: dict, t: Texts) -> str:
    word = t(f"event.{event['type']}")
    if event["type"] in LEVEL_EVENTS:
        word = f"{word} {t.level(event['level']).upper()}"
    if event.get("by"):
        word = f"{word} {t('timeline.by', by=event['by'])}"
    return word


def _reading_value(event: dict, series: dict, t: Texts) -> str:
    reading = event.get("reading") or {}
    window = series.get("window")
    if window and (reading.get("sums") or {}).get(window) is not None:
        return f"{t.value(reading['sums'][window], 'mm')}/{window}"
    if isinstance(reading.get("value"), (int, float)):
        return t.value(reading["value"], series["unit"] or "")
    return "-"


def _sms_text(counts: dict, t: Texts) -> str:
    """``12 diterima, 1 gagal``: the non-zero states of an event's SMS."""
    return ", ".join(f"{n} {t.state(state)}" for state, n in counts.items() if n) or "-"


def timeline_rows(doc: dict, t: Texts) -> list[dict]:
    """One row per event, numbered as on the chart."""
    rows = []
    for number, event in enumerate(doc["events"], start=1):
        delay = event["warning_delay_s"]
        arrived = event["reading_delay_s"]
        rows.append({
            "number": number, "time": t.time(event["at"]), "event": _event_text(event, t), "level": event["level"],
            "note": event.get("note") or "", "value": _reading_value(event, doc["series"], t),
            "arrived": "-" if arrived is None else "+" + t.duration(arrived),
            "first": "-" if delay["first"] is None else "+" + t.duration(delay["first"]),
            "last": "-" if delay["last"] is None else "+" + t.duration(delay["last"]),
            "sms": _sms_text(event["sms"], t),
        })
    return rows


def _place_row(name: str, kecamatan: str, counts: dict) -> dict:
    return {"name": name, "kecamatan": kecamatan, "messages": sum(counts.values()),
            "delivered": counts.get("delivered", 0), "sent": counts.get("sent", 0),
            "failed": sum(counts.get(s, 0) for s in FAILED),
            "waiting": sum(n for s, n in counts.items() if s not in ("delivered", "sent", "superseded", "expired", *FAILED))}


def place_rows(doc: dict, t: Texts) -> list[dict]:
    """SMS per desa (residents), then staff, with counts per delivery state."""
    rows = [_place_row(p["desa"] or t("station.whole_kecamatan", kecamatan=p["kecamatan"] or "-"),
                       p["kecamatan"] or "-", p["by_state"]) for p in doc["sms"]["places"]]
    staff = doc["sms"]["staff_by_state"]
    if sum(staff.values()):
        rows.append(_place_row(t("sms.staff"), "", staff))
    return rows


def chart_events(doc: dict) -> list[tuple]:
    """(at, type, level) of every event, numbered in the order of the timeline."""
    return [(parse_ts(e["at"]), e["type"], e["level"]) for e in doc["events"]]


def render(doc: dict, series: Series, lang: str, zone: tzinfo, other_url: str | None = None) -> str:
    """The printable page of one report; ``other_url`` links the same page in the other language."""
    t = Texts(lang, zone)
    chart = build_chart(series.points, series.start, series.end, series.thresholds, chart_events(doc), zone,
                        width=720, height=240, floor_zero=series.metric == "rainfall")
    alert = doc["alert"]
    metric_word = t(f"kind.{series.metric}") if series.metric else ""
    caption = (t("chart.caption_rain", window=series.window) if series.metric == "rainfall"
               else t("chart.caption", metric=metric_word, unit=series.unit))
    return _environment().get_template("report.html").render(
        t=t, lang=t.lang, other_lang="en" if t.lang == "id" else "id", doc=doc, alert=alert, chart=chart,
        caption=caption, unit=series.unit, station=station_view(doc, t), lead=lead_view(doc, t),
        figures=figures_view(doc, t), timeline=timeline_rows(doc, t), places=place_rows(doc, t),
        spikes=doc.get("spikes"), other_url=other_url, generated=t.time(doc["generated_at"], "format.short", tz=True),
    )


def render_problem(status: int, detail: str, lang: str) -> str:
    """A plain page for a report that cannot be shown (401, 403, 404), in the page's language."""
    t = Texts(lang, None)
    return _environment().get_template("report_problem.html").render(t=t, lang=t.lang, status=status, detail=detail)
