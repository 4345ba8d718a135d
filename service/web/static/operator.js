/* EWS Luwu Timur - the operator's actions on the dashboard (spec section 10): acknowledge an
 * alert, close it by hand with a reason, start and end a station's maintenance window. Each
 * action is one call of the staff API (which checks the role and writes the audit log); what
 * the API answers is said in plain words, Bahasa Indonesia first. Loaded before dashboard.js,
 * which calls window.EWSOperator(ctx) with its state and helpers. */
(function () {
  "use strict";

  var DURATIONS_H = [1, 2, 4, 8, 12, 24, 48, 72, 168];
  var DEFAULT_DURATION_H = 4;
  var MAX_WINDOW_MS = 7 * 24 * 3600000;  // service/maintenance.py MAX_WINDOW

  window.EWSOperator = function (ctx) {
    var state = ctx.state, t = ctx.t, $ = ctx.$;

    function may(action) { return !!(state.session && state.session.may && state.session.may[action]); }

    function stationName(id) { var st = ctx.stationById(id); return st ? st.name : id; }

    function alertTitle(id) {
      var a = state.alerts.filter(function (x) { return x.id === id; })[0];
      return "#" + id + (a ? " · " + stationName(a.station_id) : "");
    }

    /* ---------- what the API said, in plain words ---------- */

    // ``what`` names the action (ack, close, mnt_start, mnt_end): a 404 or 409 means something
    // different for each. A 422 names its field: the page says what is wrong with that field.
    function why(res, what) {
      if (!res) return t("err_network");
      var body = res.body || {};
      switch (res.status) {
        case 401: return t("bad_token");
        case 403: return t("err_403");
        case 404: return t("err_404_" + what);
        case 409: return t("err_409_" + what);
        case 422:
          var field = (body.errors && body.errors[0] && body.errors[0].field) || "";
          var known = window.EWS_TEXTS.id["err_field_" + field] != null;
          return known ? t("err_field_" + field) : t("err_422", { detail: body.detail || body.title || "" });
        default: return t("err_server", { status: res.status });
      }
    }

    // One call of the staff API; ``done(res)`` on success, ``fail(text, res)`` with the reason.
    function call(path, method, body, what, done, fail) {
      ctx.request(path, { method: method, body: body ? JSON.stringify(body) : undefined, auth: true }).then(function (res) {
        if (res.ok) { done(res); return; }
        fail(why(res, what), res);
        if (res.status === 401) ctx.dropToken(t("bad_token"));
      }, function () { fail(why(null, what), null); }).then(ctx.refresh);
    }

    /* ---------- buttons on an alert card ---------- */

    function cardButtons(a) {
      var html = "";
      if (may("ack") && !a.acknowledged) {
        html += '<button type="button" class="btn btn-primary ack-button" data-ack="' + a.id + '">' + ctx.esc(t("ack")) + "</button>";
      }
      if (may("close")) {
        html += '<button type="button" class="btn close-button" data-close="' + a.id + '">' + ctx.esc(t("close")) + "</button>";
      }
      return html ? '<div class="alert-actions">' + html + "</div>" : "";
    }

    // A click in the alert list: true when it was one of these buttons.
    function onAlertsClick(ev) {
      var ack = ev.target.closest("[data-ack]");
      if (ack) { openAck(Number(ack.getAttribute("data-ack"))); return true; }
      var close = ev.target.closest("[data-close]");
      if (close) { openClose(Number(close.getAttribute("data-close"))); return true; }
      return false;
    }

    /* ---------- acknowledge ---------- */

    var ackId = null;
    function openAck(id) {
      ackId = id;
      $("ack-title").textContent = alertTitle(id);
      $("ack-note").value = "";
      $("ack-dialog").showModal();
    }

    function acknowledge(id, note) {
      call("/api/v1/alerts/" + id + "/ack", "POST", note ? { note: note } : {}, "ack",
        function () { ctx.showNotice(t("ack_done", { id: id }), false); },
        function (text) { ctx.showNotice(t("ack_failed", { id: id, why: text }), true); });
    }

    /* ---------- close by hand ---------- */

    var closeId = null;
    function openClose(id) {
      closeId = id;
      $("close-title").textContent = alertTitle(id);
      $("close-reason").value = "";
      $("close-all-clear").checked = false;
      $("close-error").hidden = true;
      $("close-dialog").showModal();
    }

    function dialogError(id, text) {
      $(id).textContent = text;
      $(id).hidden = false;
    }

    function submitClose() {
      var reason = $("close-reason").value.trim();
      if (!reason) { dialogError("close-error", t("close_need_reason")); $("close-reason").focus(); return; }
      var id = closeId;
      call("/api/v1/alerts/" + id + "/close", "POST", { reason: reason, all_clear: $("close-all-clear").checked }, "close",
        function () {
          $("close-dialog").close();
          ctx.showNotice(t($("close-all-clear").checked ? "close_done_all_clear" : "close_done", { id: id }), false);
        },
        function (text, res) {
          if (res && res.status === 422) { dialogError("close-error", text); return; }
          $("close-dialog").close();
          ctx.showNotice(t("close_failed", { id: id, why: text }), true);
        });
    }

    /* ---------- maintenance windows ---------- */

    // "YYYY-MM-DDTHH:MM" as the wall clock of the deployment's zone (WITA) <-> a Date.
    function wallText(date) {
      var parts = {};
      new Intl.DateTimeFormat("en-CA", { timeZone: state.tz, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(date).forEach(function (p) { parts[p.type] = p.value; });
      return parts.year + "-" + parts.month + "-" + parts.day + "T" + parts.hour + ":" + parts.minute;
    }
    function fromWallText(text) {
      if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(text || "")) return null;
      var guess = new Date(text + ":00Z");
      // The zone's offset at that moment: what its wall clock says minus UTC (exact for WITA, no DST).
      var offset = new Date(wallText(guess) + ":00Z").getTime() - guess.getTime();
      return new Date(guess.getTime() - offset);
    }

    function openMaintenance(stationId) {
      var select = $("mnt-station");
      select.innerHTML = state.stations.slice().sort(function (a, b) { return a.name.localeCompare(b.name); })
        .map(function (st) {
          return '<option value="' + ctx.esc(st.id) + '">' + ctx.esc(st.name) + " (" + ctx.esc(st.id) + ")</option>";
        }).join("");
      if (stationId) select.value = stationId;
      $("mnt-duration").innerHTML = DURATIONS_H.map(function (h) {
        return '<option value="' + h + '">' + ctx.esc(h < 24 ? t("hours_n", { n: h }) : t("days_n", { n: h / 24 })) + "</option>";
      }).join("");
      $("mnt-duration").value = String(DEFAULT_DURATION_H);
      setUntilFromDuration();
      $("mnt-reason").value = "";
      $("mnt-error").hidden = true;
      $("mnt-dialog").showModal();
    }

    function setUntilFromDuration() {
      var hours = Number($("mnt-duration").value) || DEFAULT_DURATION_H;
      var target = ctx.serverNow() + hours * 3600000;
      // The field holds whole minutes: up to the next one ("4 jam" is 4 h, not 3 h 59), but never past 7 days.
      var until = hours * 3600000 < MAX_WINDOW_MS ? Math.ceil(target / 60000) * 60000 : Math.floor(target / 60000) * 60000;
      $("mnt-until").value = wallText(new Date(until));
      showUntil();
    }

    function showUntil() {
      var until = fromWallText($("mnt-until").value);
      $("mnt-until-text").textContent = until ? t("mnt_until_is", { at: ctx.fmtTime(until.toISOString()),
        d: ctx.duration(until.getTime() - ctx.serverNow()) }) : "";
    }

    function submitMaintenance() {
      var stationId = $("mnt-station").value, reason = $("mnt-reason").value.trim();
      var until = fromWallText($("mnt-until").value);
      if (!until) { dialogError("mnt-error", t("err_field_until")); return; }
      if (!reason) { dialogError("mnt-error", t("mnt_need_reason")); $("mnt-reason").focus(); return; }
      var from = new Date(Math.floor(ctx.serverNow() / 1000) * 1000);
      var body = { station_id: stationId, from: from.toISOString(), until: until.toISOString(), reason: reason };
      call("/api/v1/maintenance", "POST", body, "mnt_start",
        function () {
          $("mnt-dialog").close();
          ctx.showNotice(t("mnt_started", { station: stationName(stationId), at: ctx.fmtTime(until.toISOString()) }), false);
        },
        function (text, res) {
          if (res && res.status === 422) { dialogError("mnt-error", text); return; }
          $("mnt-dialog").close();
          ctx.showNotice(t("mnt_start_failed", { station: stationName(stationId), why: text }), true);
        });
    }

    var endingId = null;
    function openEnd(id) {
      var w = (state.maintenance || []).filter(function (x) { return x.id === id; })[0];
      endingId = id;
      $("mnt-end-title").textContent = w ? stationName(w.station_id) : "#" + id;
      $("mnt-end-dialog").showModal();
    }

    function endMaintenance(id) {
      var w = (state.maintenance || []).filter(function (x) { return x.id === id; })[0];
      var name = w ? stationName(w.station_id) : "#" + id;
      call("/api/v1/maintenance/" + id, "DELETE", null, "mnt_end",
        function () { ctx.showNotice(t("mnt_ended", { station: name }), false); },
        function (text) { ctx.showNotice(t("mnt_end_failed", { station: name, why: text }), true); });
    }

    /* ---------- wiring ---------- */

    function wire() {
      $("ack-cancel").addEventListener("click", function () { $("ack-dialog").close(); });
      $("ack-form").addEventListener("submit", function (ev) {
        ev.preventDefault();
        $("ack-dialog").close();
        if (ackId !== null) acknowledge(ackId, $("ack-note").value.trim());
        ackId = null;
      });
      $("close-cancel").addEventListener("click", function () { $("close-dialog").close(); });
      $("close-form").addEventListener("submit", function (ev) { ev.preventDefault(); submitClose(); });
      $("mnt-cancel").addEventListener("click", function () { $("mnt-dialog").close(); });
      $("mnt-duration").addEventListener("change", setUntilFromDuration);
      $("mnt-until").addEventListener("input", showUntil);
      $("mnt-form").addEventListener("submit", function (ev) { ev.preventDefault(); submitMaintenance(); });
      $("mnt-end-cancel").addEventListener("click", function () { $("mnt-end-dialog").close(); });
      $("mnt-end-form").addEventListener("submit", function (ev) {
        ev.preventDefault();
        $("mnt-end-dialog").close();
        if (endingId !== null) endMaintenance(endingId);
        endingId = null;
      });
      $("ops").addEventListener("click", function (ev) {
        if (ev.target.closest("#mnt-open")) { openMaintenance(null); return; }
        var end = ev.target.closest("[data-mnt-end]");
        if (end) openEnd(Number(end.getAttribute("data-mnt-end")));
      });
    }

    return { may: may, why: why, cardButtons: cardButtons, onAlertsClick: onAlertsClick, wire: wire,
             openMaintenance: openMaintenance, fromWallText: fromWallText, wallText: wallText };
  };
})();
