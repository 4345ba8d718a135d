/* EWS Luwu Timur - the staff panel under the alerts (spec section 10): stations under
 * maintenance (start / end a window), what maintenance held back from residents, and the SMS
 * queue by priority, urgent first. Staff only: the public view never shows it. Loaded before
 * dashboard.js, which calls window.EWSOpsPanel(ctx, operator). */
(function () {
  "use strict";

  // alerts/priority.py: 0 goes first.
  var OPEN_KEY = "ews.ops.open";
  var PRIORITY_KEYS = ["warning_awas", "warning_siaga", "warning_waspada", "reminder", "reply", "broadcast",
                       "operational", "exercise"];

  window.EWSOpsPanel = function (ctx, operator) {
    var state = ctx.state, t = ctx.t, esc = ctx.esc, $ = ctx.$;

    function stationName(id) { var st = ctx.stationById(id); return st ? st.name : id; }

    // The staff API's maintenance windows (in force or to come) and the queue summary; null parts
    // when a route is not there or refused, so the rest of the page still shows.
    function load() {
      var windows = ctx.request("/api/v1/maintenance?state=active", { auth: true });
      var queue = ctx.request("/api/v1/notifications/queue", { auth: true });
      return Promise.all([windows, queue]).then(function (r) {
        state.maintenance = r[0].ok && r[0].body ? r[0].body.items : [];
        state.queue = r[1].ok && r[1].body ? r[1].body : null;
      });
    }

    function maintenanceHtml() {
      var now = ctx.serverNow();
      var rows = (state.maintenance || []).map(function (w) {
        var started = new Date(w.from).getTime() <= now;
        var when = started ? t("mnt_row_until", { at: ctx.fmtTime(w.until) })
          : t("mnt_row_planned", { from: ctx.fmtTime(w.from), at: ctx.fmtTime(w.until) });
        var held = (state.suppressed && state.suppressed.by_station[w.station_id]) || 0;
        return '<li class="mnt-row" data-maintenance-id="' + w.id + '" data-station="' + esc(w.station_id) + '">' +
          "<b>" + esc(stationName(w.station_id)) + "</b> · " + esc(when) +
          '<br><span class="muted">' + esc(t("mnt_row_reason", { reason: w.reason, by: w.by })) +
          (held ? " · " + esc(t("mnt_row_held", { n: held })) : "") + "</span>" +
          (operator.may("maintenance") ? ' <button type="button" class="btn btn-small" data-mnt-end="' + w.id + '">' +
            esc(t("mnt_end")) + "</button>" : "") + "</li>";
      });
      return '<section class="ops-part" id="ops-maintenance"><h3>' + esc(t("mnt_title")) +
        ' <span class="count">(' + rows.length + ")</span></h3>" +
        (rows.length ? '<ul class="ops-list">' + rows.join("") + "</ul>" : '<p class="muted">' + esc(t("mnt_none")) + "</p>") +
        (operator.may("maintenance") ? '<button type="button" class="btn" id="mnt-open">' + esc(t("mnt_start")) + "</button>" : "") +
        "</section>";
    }

    function suppressedHtml() {
      var s = state.suppressed || { count: 0, items: [], by_station: {} };
      var items = s.items.map(function (e) {
        return '<li data-suppressed-event="' + e.id + '" data-alert-id="' + e.alert_id + '">' +
          ctx.badge(e.level) + " <b>" + esc(stationName(e.station_id)) + "</b> · " +
          esc(t("supp_row", { what: t("notif_" + e.notification), event: t("ev_" + e.type) })) +
          ' <span class="muted">' + esc(ctx.fmtTime(e.at)) + "</span></li>";
      });
      return '<section class="ops-part" id="ops-suppressed"><h3>' + esc(t("supp_title")) +
        ' <span class="count" id="supp-count">(' + s.count + ")</span></h3>" +
        (items.length ? '<ul class="ops-list">' + items.join("") + "</ul>" : '<p class="muted">' + esc(t("supp_none")) + "</p>") +
        "</section>";
    }

    function queueHtml() {
      var q = state.queue;
      if (!q) return "";
      var rows = q.priorities.map(function (p) {
        var key = PRIORITY_KEYS[p.priority] || "priority_" + p.priority;
        return '<tr data-priority="' + p.priority + '" class="' + (p.queued ? "" : "zero") + '"><td>' +
          esc(t("prio_" + key)) + '</td><td class="num"><b>' + p.queued + "</b></td><td>" +
          (p.oldest_created_at ? esc(t("queue_oldest", { ago: ctx.ago(p.oldest_created_at) })) : "") + "</td></tr>";
      });
      return '<section class="ops-part" id="ops-queue"><h3>' + esc(t("queue_title")) +
        ' <span class="count" id="queue-total">(' + q.total + ")</span></h3>" +
        '<p class="muted">' + esc(t("queue_help")) + "</p>" +
        '<table class="queue"><tbody>' + rows.join("") + "</tbody></table></section>";
    }

    // One line of counts, the details under it: folded, the alerts keep the room on a wall screen.
    function summaryText() {
      var held = state.suppressed ? state.suppressed.count : 0;
      return t("ops_summary", { mnt: (state.maintenance || []).length, held: held, queued: state.queue ? state.queue.total : 0 });
    }

    function render() {
      var ops = $("ops");
      ops.hidden = !state.session;
      if (!state.session) { ops.innerHTML = ""; return; }
      var open = localStorage.getItem(OPEN_KEY) === "1";
      ops.innerHTML = '<details id="ops-details"' + (open ? " open" : "") + '><summary id="ops-summary">' +
        esc(summaryText()) + "</summary>" + maintenanceHtml() + suppressedHtml() + queueHtml() + "</details>";
    }

    function wire() {
      // "toggle" does not bubble: listen while it goes down to the details element.
      $("ops").addEventListener("toggle", function (ev) {
        if (ev.target.id === "ops-details") localStorage.setItem(OPEN_KEY, ev.target.open ? "1" : "0");
      }, true);
    }

    return { load: load, render: render, wire: wire };
  };
})();
