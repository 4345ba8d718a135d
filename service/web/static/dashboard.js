/* EWS Luwu Timur - operations dashboard. Plain JS, no build step: Leaflet for the map,
 * uPlot for the charts (chart.js); the operator's actions in operator.js and the staff panel in
 * ops_panel.js; everything else here. Data: /dashboard/public.json for everyone; with a token
 * also /dashboard/session.json and the staff API (/api/v1/alerts, /maintenance, /notifications/queue). */
(function () {
  "use strict";

  var LEVELS = ["normal", "waspada", "siaga", "awas"];
  // BMKG / BNPB colours; grey for a station that stopped reporting.
  var COLORS = { normal: "#2e9d3a", waspada: "#f2c511", siaga: "#f07f0c", awas: "#d7191c", offline: "#8c8c8c" };
  var TZ_LABELS = { "Asia/Makassar": "WITA", "Asia/Jakarta": "WIB", "Asia/Pontianak": "WIB", "Asia/Jayapura": "WIT" };
  var TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
  var TOKEN_KEY = "ews.token";
  var LANG_KEY = "ews.lang";

  var params = new URLSearchParams(location.search);
  // ?poll=N (seconds) and ?tiles=off exist for tests and for screens on a closed network.
  var POLL_MS = clamp(Number(params.get("poll")) || 5, 1, 60) * 1000;
  var LOST_AFTER_MS = Math.max(3 * POLL_MS, 10000);
  var CHART_REFRESH_MS = 60000;
  var FETCH_TIMEOUT_MS = 8000;
  var NEW_ALERT_MS = 120000;

  var state = {
    lang: localStorage.getItem(LANG_KEY) || "id",
    token: null,
    session: null,          // {name, role, can_ack} with a token
    stations: [],
    alerts: [],
    exercises: [],          // running drills (public.json): {id, stations, until, residents}
    tz: "Asia/Makassar",
    skewMs: 0,              // server clock minus this screen's clock
    lastOk: null,           // Date of the last successful refresh
    failingSince: null,
    selected: params.get("station"),
    sort: { key: "level", dir: -1 },
    firstSeen: {},          // alert id -> when this page first saw it
    loaded: false,
    apiMissing: false,
    chartDoc: null,
    chartFetchedAt: 0,
    reports: {},            // alert id -> printable report link (staff; each with a 15-minute ticket)
    recentClosed: [],       // staff: public alerts closed in the last 7 days
    maintenance: [],        // staff: maintenance windows in force or to come (GET /api/v1/maintenance)
    suppressed: null,       // staff: {count, items, by_station} of what maintenance held back (24 h)
    queue: null             // staff: unsent SMS by priority (GET /api/v1/notifications/queue)
  };
  var operator, opsPanel, chart;   // operator.js, ops_panel.js and chart.js, made at start-up

  var map, markers = {}, kecLabels = {}, tilesOk = false;

  function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }
  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function t(key, vars) {
    var texts = window.EWS_TEXTS[state.lang] || window.EWS_TEXTS.id;
    var s = texts[key] != null ? texts[key] : (window.EWS_TEXTS.id[key] != null ? window.EWS_TEXTS.id[key] : key);
    return s.replace(/\{(\w+)\}/g, function (_, k) { return vars && vars[k] != null ? vars[k] : ""; });
  }
  function rank(level) { var i = LEVELS.indexOf(level); return i < 0 ? 0 : i; }
  function serverNow() { return Date.now() + state.skewMs; }

  /* ---------- times, shown in WITA (or EWS_TIMEZONE) ---------- */

  function tzLabel() { return TZ_LABELS[state.tz] || state.tz; }
  function dayKey(d) {
    return new Intl.DateTimeFormat("en-CA", { timeZone: state.tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
  }
  function fmtTime(iso, seconds) {
    if (!iso) return "–";
    var d = new Date(iso);
    var opts = { timeZone: state.tz, hour: "2-digit", minute: "2-digit", hour12: false };
    if (seconds) opts.second = "2-digit";
    if (dayKey(d) !== dayKey(new Date(serverNow()))) { opts.day = "numeric"; opts.month = "short"; }
    return new Intl.DateTimeFormat(state.lang === "en" ? "en-GB" : "id-ID", opts).format(d) + " " + tzLabel();
  }
  function duration(ms) {
    var m = Math.max(0, Math.floor(ms / 60000)), h = Math.floor(m / 60), d = Math.floor(h / 24);
    if (d > 0) return t("dur_d", { d: d, h: h % 24 });
    if (h > 0) return t("dur_h", { h: h, m: m % 60 });
    return t("dur_m", { n: m });
  }
  function ago(iso) {
    if (!iso) return t("no_data");
    var s = Math.max(0, Math.floor((serverNow() - new Date(iso).getTime()) / 1000));
    if (s < 60) return t("ago_s", { n: s });
    if (s < 3600) return t("ago_m", { n: Math.floor(s / 60) });
    if (s < 86400) return t("ago_h", { h: Math.floor(s / 3600), m: Math.floor(s / 60) % 60 });
    return t("ago_d", { d: Math.floor(s / 86400) });
  }

  /* ---------- stations ---------- */

  function shownLevel(st) { return st.status && st.status.online ? st.status.level : "offline"; }
  function levelText(level) { return level === "offline" ? t("offline") : t("level_" + level); }
  function badge(level) {
    return '<span class="badge lvl-' + esc(level) + '">' + esc(levelText(level)) + "</span>";
  }
  function stationById(id) {
    for (var i = 0; i < state.stations.length; i++) if (state.stations[i].id === id) return state.stations[i];
    return null;
  }
  function latestOf(st, metric) {
    var latest = (st.status && st.status.latest) || {};
    return latest[metric] || null;
  }
  var ARROWS = { rising: "▲", falling: "▼", steady: "▶" };
  function valueText(st) {
    if (st.primary_metric === "water_level") {
      var wl = latestOf(st, "water_level");
      if (!wl) return "–";
      var s = Number(wl.value).toFixed(2) + " m";
      if (st.trend) {
        var sign = st.trend.per_hour > 0 ? "+" : "";
        s += ' <span class="trend trend-' + st.trend.direction + '" title="' + esc(t("trend_" + st.trend.direction)) + '">' +
          ARROWS[st.trend.direction] + " " + sign + st.trend.per_hour.toFixed(2) + " m/" + (state.lang === "en" ? "h" : "jam") + "</span>";
      }
      return s;
    }
    if (st.primary_metric === "rainfall" && st.rain) {
      return Number(st.rain["1h"]).toFixed(1) + " mm/" + esc(t("rain_1h")) +
        ' <span class="muted">· ' + Number(st.rain["24h"]).toFixed(0) + " mm/" + esc(t("rain_24h")) + "</span>";
    }
    return "–";
  }
  function sortValue(st, key) {
    switch (key) {
      case "level": return shownLevel(st) === "offline" ? 0.5 + rank(st.status.level) / 10 : rank(st.status.level);
      case "value":
        if (st.primary_metric === "rainfall") return st.rain ? st.rain["1h"] : -1;
        var wl = latestOf(st, "water_level"); return wl ? Number(wl.value) : -1;
      case "last_seen": return st.status.last_seen ? new Date(st.status.last_seen).getTime() : 0;
      default: return String(st[key] || "").toLowerCase();
    }
  }
  function sortedStations() {
    var key = state.sort.key, dir = state.sort.dir;
    return state.stations.slice().sort(function (a, b) {
      var va = sortValue(a, key), vb = sortValue(b, key);
      if (va < vb) return -dir;
      if (va > vb) return dir;
      return a.name.localeCompare(b.name);
    });
  }

  /* ---------- map ---------- */

  function initMap() {
    map = L.map("map", { zoomControl: true, attributionControl: true, minZoom: 6, maxZoom: 17 });
    map.setView([-2.5, 120.95], 9);
    if (params.get("tiles") !== "off") {
      var tiles = L.tileLayer(TILE_URL, {
        maxZoom: 17,
        attribution: '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>'
      });
      // Without internet the tiles fail: the plain background, labels and markers stay.
      tiles.on("tileerror", function () { if (!tilesOk) $("map-note").hidden = false; });
      tiles.on("tileload", function () { tilesOk = true; $("map-note").hidden = true; $("map").classList.add("has-tiles"); });
      tiles.addTo(map);
    } else {
      $("map-note").hidden = false;
    }
    var legend = L.control({ position: "bottomleft" });
    legend.onAdd = function () {
      var div = L.DomUtil.create("div", "map-legend");
      div.id = "map-legend";
      return div;
    };
    legend.addTo(map);
  }

  function renderLegend() {
    var html = "";
    LEVELS.concat(["offline"]).forEach(function (lv) {
      html += '<span><i style="background:' + COLORS[lv] + '"></i>' + esc(levelText(lv)) + "</span>";
    });
    $("map-legend").innerHTML = html;
  }

  function tooltipHtml(st) {
    var lv = shownLevel(st);
    var html = "<strong>" + esc(st.name) + "</strong><br>" + esc(st.river || "") +
      (st.river ? " · " : "") + esc(st.desa ? st.desa + ", " : "") + esc(st.kecamatan || "") + "<br>" + badge(lv);
    if (lv === "offline" && st.status.level !== "normal") html += " " + badge(st.status.level);
    var latest = (st.status && st.status.latest) || {};
    var units = { water_level: "m", rainfall: "mm", battery: "V", signal: "dBm" };
    html += "<table>";
    Object.keys(latest).forEach(function (metric) {
      if (metric === "rain_tips") return;
      var v = latest[metric];
      html += "<tr><td>" + esc(t("metric_" + metric)) + "</td><td><b>" + esc(v.value) + " " + esc(units[metric] || "") +
        "</b></td><td>" + esc(fmtTime(v.ts)) + "</td></tr>";
    });
    if (st.rain) {
      html += "<tr><td>" + esc(t("metric_rainfall")) + " " + esc(t("rain_1h")) + "</td><td><b>" + st.rain["1h"] + " mm</b></td><td></td></tr>";
      html += "<tr><td>" + esc(t("metric_rainfall")) + " " + esc(t("rain_24h")) + "</td><td><b>" + st.rain["24h"] + " mm</b></td><td></td></tr>";
    }
    html += "</table>" + esc(t("col_last_seen")) + ": " + esc(fmtTime(st.status.last_seen)) + " (" + esc(ago(st.status.last_seen)) + ")";
    if (st.status.maintenance) html += '<div class="tooltip-mnt">' + esc(t("mnt_badge_until", { at: fmtTime(st.status.maintenance.until) })) + "</div>";
    return html + waveTooltip(st.id) + sirensHtml(st);
  }

  // The station's incoming wave (its upstream alert), as one line under its values.
  function waveTooltip(stationId) {
    var a = state.alerts.filter(function (x) { return x.kind === "upstream" && x.station_id === stationId && !x.exercise_id; })[0];
    if (!a || !a.eta) return "";
    var src = stationById(a.source_station_id) || { name: a.source_station_id };
    return '<div class="tooltip-wave">🌊 ' + esc(t("wave_from", { source: src.name, level: levelText(a.level) })) +
      " · " + esc(t("wave_eta", { at: fmtTime(a.eta) })) + "</div>";
  }

  // A station's sirens (docs/sirens.md): sounding, quiet, or in trouble (silent / fault).
  function sirensHtml(st) {
    return (st.sirens || []).map(function (s) {
      var word = s.trouble === "silent" ? "siren_silent" : s.trouble === "error" ? "siren_error"
        : s.sounding ? "siren_on" : s.state === "unknown" ? "siren_unknown" : "siren_off";
      return '<br><span class="siren siren-' + esc(word.slice(6)) + '">' + esc(t("siren")) + " " + esc(s.id) + ": " +
        esc(t(word)) + "</span>";
    }).join("");
  }

  function renderMap() {
    var bounds = [];
    var kec = {};
    state.stations.forEach(function (st) {
      if (st.lat == null || st.lon == null) return;
      var lv = shownLevel(st);
      var style = {
        radius: lv === "awas" ? 13 : lv === "siaga" ? 11 : 9,
        color: "#1b1b1b", weight: 1.5, fillColor: COLORS[lv], fillOpacity: 0.95,
        className: "ews-marker ews-station-" + st.id
      };
      var m = markers[st.id];
      if (!m) {
        m = L.circleMarker([st.lat, st.lon], style).addTo(map);
        m.bindTooltip("", { direction: "top", offset: [0, -8] });
        m.on("click", function () { selectStation(st.id, false); });
        markers[st.id] = m;
      } else {
        m.setLatLng([st.lat, st.lon]);
        m.setStyle(style);
        m.setRadius(style.radius);
      }
      m.setTooltipContent(tooltipHtml(st));
      var el = m.getElement();
      if (el) {
        el.setAttribute("data-level", lv);
        el.setAttribute("data-station", st.id);
        el.classList.toggle("pulse", lv === "awas");
        var wave = state.alerts.filter(function (x) { return x.kind === "upstream" && x.station_id === st.id && !x.exercise_id; })[0];
        if (wave) el.setAttribute("data-wave", wave.source_station_id); else el.removeAttribute("data-wave");
      }
      if (lv === "awas" || lv === "siaga") m.bringToFront();
      bounds.push([st.lat, st.lon]);
      // Kecamatan labels come from the stations themselves: they need no tiles.
      if (st.kecamatan) {
        var k = kec[st.kecamatan] || (kec[st.kecamatan] = { lat: 0, lon: 0, n: 0, top: -90 });
        k.lat += st.lat; k.lon += st.lon; k.n += 1; k.top = Math.max(k.top, st.lat);
      }
    });
    Object.keys(kec).forEach(function (name) {
      var k = kec[name];
      var pos = [k.top + 0.035, k.lon / k.n];
      if (!kecLabels[name]) {
        kecLabels[name] = L.marker(pos, {
          icon: L.divIcon({ className: "ews-kec-label", html: esc(name), iconSize: null }),
          interactive: false, keyboard: false
        }).addTo(map);
      } else {
        kecLabels[name].setLatLng(pos);
      }
    });
    state.bounds = bounds;
    if (!state.loaded) fitStations();
  }

  var userMoved = false, fitting = false;
  function fitStations() {
    if (!state.bounds || !state.bounds.length) return;
    fitting = true;
    setTimeout(function () { fitting = false; }, 1000);
    map.invalidateSize();
    map.fitBounds(state.bounds, { padding: [50, 50], maxZoom: 12 });
  }

  /* ---------- station table ---------- */

  function renderTable() {
    var rows = sortedStations().map(function (st) {
      var lv = shownLevel(st);
      var level = badge(lv);
      if (lv === "offline" && st.status.level !== "normal") level += " " + badge(st.status.level);
      var mnt = st.status.maintenance;
      if (mnt) level += ' <span class="badge maintenance" title="' + esc(t("mnt_badge_until", { at: fmtTime(mnt.until) })) + '">' + esc(t("mnt_badge")) + "</span>";
      return '<tr data-station="' + esc(st.id) + '" data-level="' + esc(lv) + '"' + (mnt ? ' data-maintenance-until="' + esc(mnt.until) + '"' : "") +
        ' class="' + (st.id === state.selected ? "selected" : "") + '">' +
        "<td><b>" + esc(st.name) + '</b><br><span class="muted">' + esc(st.id) + "</span></td>" +
        "<td>" + esc(st.river || "–") + "</td>" +
        "<td>" + esc(st.kecamatan || "–") + "</td>" +
        "<td>" + level + "</td>" +
        '<td class="num">' + valueText(st) + "</td>" +
        "<td>" + esc(fmtTime(st.status.last_seen)) + '<br><span class="muted">' + esc(ago(st.status.last_seen)) + "</span></td></tr>";
    });
    document.querySelector("#stations tbody").innerHTML = rows.join("");
    document.querySelectorAll("#stations th").forEach(function (th) {
      th.classList.toggle("sorted", th.getAttribute("data-sort") === state.sort.key);
      th.setAttribute("aria-sort", th.getAttribute("data-sort") === state.sort.key ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
    });
  }

  /* ---------- alerts ---------- */

  function sortedAlerts() {
    // Real alerts first; a drill's alerts (marked LATIHAN) after them, whatever their level.
    return state.alerts.slice().sort(function (a, b) {
      return (a.exercise_id ? 1 : 0) - (b.exercise_id ? 1 : 0) ||
        rank(b.level) - rank(a.level) || String(a.opened_at).localeCompare(String(b.opened_at));
    });
  }

  // A plain link to an alert's printable report (opens in a new tab; no script on that page).
  function reportLink(id) {
    var href = state.reports[String(id)];
    if (!href) return "";
    if (state.lang === "en") href += "&lang=en";
    return '<a class="report-link" href="' + esc(href) + '" target="_blank" rel="noopener noreferrer" data-report="' +
      id + '">' + esc(t("report")) + "</a>";
  }

  function renderClosed() {
    if (!state.session || !state.recentClosed.length) return "";
    return '<h3 class="closed-title">' + esc(t("recent_closed")) + '</h3><ul class="closed-alerts">' +
      state.recentClosed.map(function (a) {
        var st = stationById(a.station_id) || { name: a.station_id };
        return '<li data-alert-id="' + a.id + '">' + badge(a.peak_level) + " <b>" + esc(st.name) + "</b> " +
          '<span class="muted">' + esc(t("closed_at", { at: fmtTime(a.closed_at) })) + "</span> " +
          (a.closed_by ? '<span class="closed-by">' + esc(t("closed_by", { by: a.closed_by, reason: a.reason })) + "</span> " : "") +
          reportLink(a.id) + "</li>";
      }).join("") + "</ul>";
  }

  function renderExercises() {
    var banner = $("exercise-banner");
    var running = state.exercises || [];
    banner.hidden = !running.length;
    banner.innerHTML = running.map(function (ex) {
      var names = ex.stations.map(function (id) { var st = stationById(id); return st ? st.name : id; }).join(", ");
      return '<div class="exercise-line" data-exercise-id="' + ex.id + '">🛈 ' +
        esc(t("exercise_running", { id: ex.id, stations: names, until: fmtTime(ex.until) })) + " " +
        esc(t(ex.residents ? "exercise_residents" : "exercise_staff_only")) + "</div>";
    }).join("");
  }

  /* ---------- incoming waves (banjir kiriman, spec section 11) ---------- */

  // An upstream alert: where the wave comes from, at what level, and a countdown to its ETA here.
  function waveHtml(a) {
    if (a.kind !== "upstream" || !a.eta) return "";
    var src = stationById(a.source_station_id) || { name: a.source_station_id };
    return '<div class="alert-wave" data-source="' + esc(a.source_station_id) + '">🌊 ' +
      esc(t("wave_from", { source: src.name, level: levelText(a.level) })) + " · " +
      esc(t("wave_eta", { at: fmtTime(a.eta) })) + ' · <b class="wave-countdown" data-eta="' + esc(a.eta) + '">' +
      esc(countdownText(a.eta)) + "</b></div>";
  }

  function countdownText(eta) {
    var ms = new Date(eta).getTime() - serverNow();
    if (ms <= 0) return t("wave_arrived");
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return t("wave_in", { t: h + ":" + pad(m) + ":" + pad(s % 60) });
  }

  // Every second, between renders: the countdowns move, nothing else is rebuilt.
  function tickWaves() {
    document.querySelectorAll(".wave-countdown").forEach(function (el) {
      el.textContent = countdownText(el.getAttribute("data-eta"));
    });
  }

  // An alert of a station under maintenance reaches no resident (its upstream wave and drills still do).
  function maintenanceLine(a, st) {
    var mnt = st.status && st.status.maintenance;
    if (!mnt || a.exercise_id || a.kind === "upstream") return "";
    return '<div class="alert-mnt"><span class="badge maintenance">' + esc(t("mnt_badge")) + "</span> " +
      esc(t("mnt_alert", { at: fmtTime(mnt.until) })) + "</div>";
  }

  function renderAlerts() {
    var now = serverNow();
    var list = sortedAlerts();
    $("alert-count").textContent = list.length ? "(" + list.length + ")" : "";
    if (!list.length) {
      $("alerts").innerHTML = '<p class="all-clear">' + esc(t("no_alerts")) + "</p>" + renderClosed();
      return;
    }
    $("alerts").innerHTML = list.map(function (a) {
      var st = stationById(a.station_id) || { name: a.station_id, kecamatan: "" };
      var isNew = state.loaded && state.firstSeen[a.id] && now - state.firstSeen[a.id] < NEW_ALERT_MS;
      var ack = a.acknowledged;
      var ackHtml = ack
        ? '<span class="acked">✔ ' + esc(ack.by ? t("acked_by", { by: ack.by, at: fmtTime(ack.at) }) : t("acked", { at: fmtTime(ack.at) })) + "</span>" +
          (ack.note ? ' <span class="muted">“' + esc(ack.note) + "”</span>" : "")
        : '<span class="not-acked">' + esc(t("not_acked")) + "</span>";
      var operational = a.kind === "offline" || a.kind === "battery";
      var sms = a.sms || null;
      var smsHtml = "";
      if (sms && operational) {
        smsHtml = esc(t("sms_staff", { staff: sms.staff }));
      } else if (sms) {
        smsHtml = esc(t("sms", { residents: sms.residents, delivered: sms.residents_delivered }));
        if (sms.staff) smsHtml += " · " + esc(t("sms_staff", { staff: sms.staff }));
        if (sms.failed) smsHtml += ' · <span class="failed">' + esc(t("sms_failed", { failed: sms.failed })) + "</span>";
        if (sms.pending) smsHtml += " · " + esc(t("sms_pending", { pending: sms.pending }));
      }
      var carriers = Object.keys((sms && sms.by_provider) || {}).sort();
      if (carriers.length) {
        smsHtml += ' · <span class="sms-via">' + esc(t("sms_via", { providers: carriers.map(function (p) {
          return t("provider_" + p) + " " + sms.by_provider[p];
        }).join(", ") })) + "</span>";
      }
      return '<article class="alert ' + (operational ? "operational" : "lvl-border-" + esc(a.level)) + (isNew ? " is-new" : "") + (a.exercise ? " is-exercise" : "") + '" data-alert-id="' + a.id + '" data-level="' + esc(a.level) + '" data-station="' + esc(a.station_id) + '"' + (a.exercise_id ? ' data-exercise-id="' + a.exercise_id + '"' : "") + ">" +
        '<div class="alert-head">' + (operational ? '<span class="badge lvl-offline">' + esc(t("kind_" + a.kind)) + "</span>" : badge(a.level)) + ' <b class="alert-station">' + esc(st.name) + "</b>" +
        (st.kecamatan ? ' <span class="muted">· ' + esc(st.kecamatan) + "</span>" : "") +
        (a.exercise ? ' <span class="badge exercise">' + esc(t("exercise")) + "</span>" : "") + "</div>" +
        '<div class="alert-body">' + esc(t("kind_" + a.kind)) + " · " + esc(t("open_for", { d: duration(now - new Date(a.opened_at).getTime()) })) +
        " (" + esc(fmtTime(a.opened_at)) + ")" +
        (a.peak_level && a.peak_level !== a.level ? " · " + esc(t("peak", { level: levelText(a.peak_level) })) : "") + "</div>" +
        waveHtml(a) + maintenanceLine(a, st) +
        '<div class="alert-ack">' + ackHtml + "</div>" +
        (smsHtml ? '<div class="alert-sms">' + smsHtml + "</div>" : "") +
        (state.reports[String(a.id)] ? '<div class="alert-report">' + reportLink(a.id) + "</div>" : "") +
        operator.cardButtons(a) +
        "</article>";
    }).join("") + renderClosed();
  }

  function renderSummary() {
    var counts = { awas: 0, siaga: 0, waspada: 0, normal: 0, offline: 0 };
    state.stations.forEach(function (st) { counts[shownLevel(st)] += 1; });
    $("summary").innerHTML = ["awas", "siaga", "waspada", "normal", "offline"].map(function (lv) {
      return '<span class="chip lvl-' + lv + (counts[lv] ? "" : " zero") + '" data-level="' + lv + '">' + esc(levelText(lv)) + " <b>" + counts[lv] + "</b></span>";
    }).join("");
    // A drill's AWAS must not turn the screen's title and colour to AWAS.
    var top = state.alerts.reduce(function (m, a) { return a.exercise_id ? m : Math.max(m, rank(a.level)); }, 0);
    document.title = (top >= 2 ? "[" + LEVELS[top].toUpperCase() + "] " : "") + "EWS Luwu Timur";
    document.body.setAttribute("data-top-level", LEVELS[top]);
  }

  function renderWho() {
    var who = $("who");
    if (state.session) {
      who.hidden = false;
      who.textContent = state.session.name + " (" + t("role_" + state.session.role) + ")";
      $("login-button").hidden = true;
      $("logout-button").hidden = false;
    } else {
      who.hidden = false;
      who.textContent = t("public_view");
      $("login-button").hidden = false;
      $("logout-button").hidden = true;
    }
  }

  function renderAll() {
    renderSummary();
    renderMap();
    renderTable();
    renderAlerts();
    renderExercises();
    renderWho();
    renderLegend();
    opsPanel.render();
  }

  /* ---------- chart (chart.js) ---------- */

  function loadChart(force) {
    var st = stationById(state.selected);
    if (!st || !st.primary_metric) return;
    $("chart-station").textContent = st.name;
    if (!force && state.chartDoc && state.chartDoc.station_id === st.id && Date.now() - state.chartFetchedAt < CHART_REFRESH_MS) return;
    state.chartFetchedAt = Date.now();
    request("/dashboard/stations/" + encodeURIComponent(st.id) + "/series.json?hours=24").then(function (res) {
      if (!res.ok || state.selected !== st.id) return;
      state.chartDoc = res.body;
      state.chartSeenAt = st.status.last_seen;
      chart.build(res.body);
    }).catch(function () { /* the poll loop reports a lost server */ });
  }

  function selectStation(id, pan) {
    state.selected = id;
    renderTable();
    loadChart(true);
    var st = stationById(id);
    if (pan && st && st.lat != null) map.panTo([st.lat, st.lon]);
  }

  /* ---------- server ---------- */

  function request(path, opts) {
    opts = opts || {};
    var headers = { Accept: "application/json" };
    if (opts.body) headers["Content-Type"] = "application/json";
    if (opts.auth && state.token) headers.Authorization = "Bearer " + state.token;
    var ctrl = new AbortController();
    var timer = setTimeout(function () { ctrl.abort(); }, FETCH_TIMEOUT_MS);
    return fetch(path, { method: opts.method || "GET", headers: headers, body: opts.body, cache: "no-store", signal: ctrl.signal })
      .then(function (res) {
        return res.text().then(function (text) {
          var body = null;
          try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
          return { ok: res.ok, status: res.status, body: body };
        });
      })
      .finally(function () { clearTimeout(timer); });
  }

  function dropToken(reason) {
    state.token = null;
    state.session = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showNotice(reason, true);
  }

  // The staff API's active alerts (all pages), or null when the route is not there.
  function loadApiAlerts() {
    var items = [];
    function page(cursor, n) {
      var path = "/api/v1/alerts?state=active&limit=100" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      return request(path, { auth: true }).then(function (res) {
        if (!res.ok || !res.body || !Array.isArray(res.body.items)) return null;
        items = items.concat(res.body.items);
        if (res.body.next_cursor && n < 10) return page(res.body.next_cursor, n + 1);
        return items;
      });
    }
    return page(null, 0);
  }

  function loadStaff() {
    return Promise.all([request("/dashboard/session.json", { auth: true }), loadApiAlerts(), opsPanel.load()]).then(function (r) {
      var sess = r[0], apiAlerts = r[1];
      if (sess.status === 401) { dropToken(t("bad_token")); return null; }
      if (sess.status === 403) { dropToken(t("gateway_token")); return null; }
      if (!sess.ok || !sess.body) throw new Error("session " + sess.status);
      state.session = { name: sess.body.name, role: sess.body.role, can_ack: sess.body.can_ack, may: sess.body.may || {} };
      state.reports = sess.body.reports || {};
      state.recentClosed = sess.body.recently_closed || [];
      state.suppressed = sess.body.suppressed || null;
      var counts = {};
      sess.body.alerts.forEach(function (a) { counts[a.id] = a.sms; });
      if (apiAlerts === null && !state.apiMissing) showNotice(t("api_missing"), false);
      state.apiMissing = apiAlerts === null;
      var alerts = apiAlerts === null ? sess.body.alerts : apiAlerts.filter(function (a) { return !a.state || a.state === "active"; });
      return alerts.map(function (a) { return Object.assign({}, a, { sms: a.sms || counts[a.id] || null }); });
    });
  }

  function refresh() {
    var pub = request("/dashboard/public.json");
    var staff = state.token ? loadStaff() : Promise.resolve(null);
    return Promise.all([pub, staff]).then(function (r) {
      var res = r[0];
      if (!res.ok || !res.body) throw new Error("public " + res.status);
      var doc = res.body;
      state.tz = doc.timezone || state.tz;
      state.skewMs = Date.parse(doc.generated_at) - Date.now();
      state.stations = doc.stations;
      state.alerts = r[1] || doc.alerts;
      if (!r[1]) { state.reports = {}; state.recentClosed = []; state.maintenance = []; state.suppressed = null; state.queue = null; }
      state.exercises = doc.exercises || [];
      var now = serverNow();
      state.alerts.forEach(function (a) { if (!state.firstSeen[a.id]) state.firstSeen[a.id] = state.loaded ? now : 1; });
      if (!state.selected || !stationById(state.selected)) {
        var top = sortedStations()[0];
        state.selected = top ? top.id : null;
      }
      state.lastOk = new Date();
      state.failingSince = null;
      renderAll();
      state.loaded = true;
      setConnection();
      loadChart(false);
      if (state.chartDoc && stationById(state.selected) &&
          stationById(state.selected).status.last_seen !== state.chartSeenAt) {
        state.chartSeenAt = stationById(state.selected).status.last_seen;
        loadChart(true);
      }
    }).catch(function (err) {
      if (!state.failingSince) state.failingSince = new Date();
      setConnection(err);
    });
  }

  function setConnection() {
    var since = state.lastOk || state.failingSince;
    var lost = state.failingSince && Date.now() - since.getTime() >= LOST_AFTER_MS;
    lost = lost || (state.failingSince && !state.lastOk && Date.now() - state.failingSince.getTime() >= LOST_AFTER_MS);
    var banner = $("offline-banner");
    banner.hidden = !lost;
    document.body.classList.toggle("lost", !!lost);
    if (lost) banner.textContent = "⚠ " + t("lost", { since: state.lastOk ? fmtTime(state.lastOk.toISOString(), true) : "–" });
    $("last-update").textContent = state.lastOk ? fmtTime(state.lastOk.toISOString(), true) : "–";
  }

  function poll() {
    refresh().finally(function () { setTimeout(poll, POLL_MS); });
  }

  /* ---------- notices, login ---------- */

  var noticeTimer = null;
  function showNotice(text, isError) {
    var n = $("notice");
    n.textContent = text;
    n.classList.toggle("error", !!isError);
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(function () { n.hidden = true; }, 8000);
  }

  function takeTokenFromUrl() {
    var token = params.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      params.delete("token");
      var qs = params.toString();
      history.replaceState(null, "", location.pathname + (qs ? "?" + qs : "") + location.hash);
    }
    state.token = sessionStorage.getItem(TOKEN_KEY);
  }

  function applyTexts() {
    document.documentElement.lang = state.lang;
    document.querySelectorAll("[data-i18n]").forEach(function (el) { el.textContent = t(el.getAttribute("data-i18n")); });
    $("lang-button").textContent = state.lang === "id" ? "EN" : "ID";
    $("map").setAttribute("aria-label", t("map_label"));
  }

  function wire() {
    $("lang-button").addEventListener("click", function () {
      state.lang = state.lang === "id" ? "en" : "id";
      localStorage.setItem(LANG_KEY, state.lang);
      applyTexts();
      renderAll();
      setConnection();
      if (state.chartDoc) chart.build(state.chartDoc);
    });
    $("login-button").addEventListener("click", function () {
      $("login-error").hidden = true;
      $("token-input").value = "";
      $("login-dialog").showModal();
    });
    operator.wire();
    opsPanel.wire();
    $("login-cancel").addEventListener("click", function () { $("login-dialog").close(); });
    $("login-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      state.token = $("token-input").value.trim();
      sessionStorage.setItem(TOKEN_KEY, state.token);
      request("/dashboard/session.json", { auth: true }).then(function (res) {
        if (res.ok) { $("login-dialog").close(); refresh(); return; }
        $("login-error").textContent = res.status === 403 ? t("gateway_token") : t("bad_token");
        $("login-error").hidden = false;
        state.token = null;
        sessionStorage.removeItem(TOKEN_KEY);
      });
    });
    $("logout-button").addEventListener("click", function () {
      state.token = null;
      state.session = null;
      sessionStorage.removeItem(TOKEN_KEY);
      refresh();
    });
    document.querySelector("#stations thead").addEventListener("click", function (ev) {
      var th = ev.target.closest("th[data-sort]");
      if (!th) return;
      var key = th.getAttribute("data-sort");
      state.sort = { key: key, dir: state.sort.key === key ? -state.sort.dir : (key === "level" || key === "value" || key === "last_seen" ? -1 : 1) };
      renderTable();
    });
    document.querySelector("#stations tbody").addEventListener("click", function (ev) {
      var tr = ev.target.closest("tr[data-station]");
      if (tr) selectStation(tr.getAttribute("data-station"), true);
    });
    $("alerts").addEventListener("click", function (ev) {
      if (ev.target.closest("a.report-link")) return;  // the link opens the report; keep the chart as it is
      if (operator.onAlertsClick(ev)) return;
      var card = ev.target.closest("[data-station]");
      if (card) selectStation(card.getAttribute("data-station"), true);
    });
    if (window.ResizeObserver) {
      new ResizeObserver(chart.resize).observe($("chart"));
      // Keep the whole district in view when the screen or layout changes, until someone pans.
      new ResizeObserver(function () { if (userMoved) map.invalidateSize(); else fitStations(); }).observe($("map"));
    }
    map.on("dragstart zoomstart", function () { if (state.loaded && !fitting) userMoved = true; });
    // Durations and "ago" texts keep moving even between polls, and the lost-server check runs.
    setInterval(function () { if (state.loaded) { renderAlerts(); setConnection(); } }, 15000);
    setInterval(setConnection, 1000);
    setInterval(tickWaves, 1000);
  }

  var ctx = { state: state, $: $, t: t, esc: esc, request: request, refresh: refresh, showNotice: showNotice,
              dropToken: dropToken, stationById: stationById, badge: badge, fmtTime: fmtTime, ago: ago,
              duration: duration, serverNow: serverNow, levelText: levelText, COLORS: COLORS };
  operator = window.EWSOperator(ctx);
  chart = window.EWSChart(ctx);
  opsPanel = window.EWSOpsPanel(ctx, operator);
  takeTokenFromUrl();
  applyTexts();
  initMap();
  wire();
  renderLegend();
  poll();

  // For the browser tests and for curious operators at the console.
  window.EWS = { state: state, markers: markers, chart: function () { return chart.get(); }, refresh: refresh, operator: operator };
})();
