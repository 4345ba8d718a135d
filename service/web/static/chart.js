/* EWS Luwu Timur - the chart of the selected station's last hours (uPlot): the water level against
 * its thresholds, or the rain per hour and its rolling 24-hour sum; alert events as vertical lines;
 * times in the deployment's zone (WITA). Loaded before dashboard.js, which calls window.EWSChart(ctx). */
(function () {
  "use strict";

  window.EWSChart = function (ctx) {
    var state = ctx.state, t = ctx.t, $ = ctx.$, levelText = ctx.levelText, COLORS = ctx.COLORS;
    var chart = null;

    function thresholdSeries(marks, scale, windowName, xs, dash) {
      var series = [], data = [];
      ["waspada", "siaga", "awas"].forEach(function (lv) {
        if (marks[lv] == null) return;
        var unit = scale === "m" ? " m" : " mm";
        series.push({
          label: (windowName ? t("threshold_window", { level: levelText(lv), window: windowName }) : t("threshold", { level: levelText(lv) })) + " " + marks[lv] + unit,
          stroke: COLORS[lv], width: 2, dash: dash, scale: scale, points: { show: false },
          value: function () { return marks[lv]; }
        });
        data.push(xs.map(function () { return marks[lv]; }));
      });
      return { series: series, data: data };
    }

    function eventsPlugin(events) {
      return {
        hooks: {
          draw: [function (u) {
            var ctx = u.ctx, dpr = window.devicePixelRatio || 1;
            ctx.save();
            ctx.font = (11 * dpr) + "px sans-serif";
            events.forEach(function (ev) {
              var x = u.valToPos(ev.t, "x", true);
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
              ctx.strokeStyle = ev.type === "cleared" ? COLORS.normal : (COLORS[ev.level] || "#555");
              ctx.lineWidth = 2 * dpr;
              ctx.setLineDash([3 * dpr, 3 * dpr]);
              ctx.beginPath();
              ctx.moveTo(x, u.bbox.top);
              ctx.lineTo(x, u.bbox.top + u.bbox.height);
              ctx.stroke();
              ctx.fillStyle = "#222";
              ctx.fillText(t("ev_" + ev.type), x + 3 * dpr, u.bbox.top + 12 * dpr);
            });
            ctx.restore();
          }]
        }
      };
    }

    function chartSize() {
      var el = $("chart");
      var legend = el.querySelector(".u-legend");
      var w = Math.max(260, el.clientWidth - 8);
      // On a phone the panel grows with its content, so the height is fixed; on a wall screen
      // the grid fixes the panel and the chart fills it above its legend.
      if (window.matchMedia("(max-width: 900px)").matches) return { width: w, height: 260 };
      return { width: w, height: Math.max(160, el.clientHeight - (legend ? legend.offsetHeight : 40) - 16) };
    }

    // Time axis labels in WITA, 24-hour clock, the date under midnight.
    function timeAxis() {
      var hm = new Intl.DateTimeFormat("en-GB", { timeZone: state.tz, hour: "2-digit", minute: "2-digit", hour12: false });
      var dm = new Intl.DateTimeFormat(state.lang === "en" ? "en-GB" : "id-ID", { timeZone: state.tz, day: "numeric", month: "short" });
      return {
        values: function (u, splits) {
          return splits.map(function (ts) {
            var d = new Date(ts * 1000), label = hm.format(d);
            return label === "00:00" ? dm.format(d) : label;
          });
        }
      };
    }

    function buildChart(doc) {
      var tz = state.tz;
      var opts = {
        width: chartSize().width, height: chartSize().height,
        tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), tz); },
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
        plugins: [eventsPlugin(doc.events || [])]
      };
      var data, series;
      if (doc.metric === "water_level") {
        var pts = doc.points || [];
        var xs = pts.map(function (p) { return p[0]; });
        var ys = pts.map(function (p) { return p[1]; });
        if (!xs.length) { xs = [Date.parse(doc.from) / 1000, Date.parse(doc.to) / 1000]; ys = [null, null]; }
        // Quality marks (spec 17): doubtful samples in amber, spikes in red; a spike is left out of the line.
        var marked = {};
        (doc.quality || []).forEach(function (q) { marked[q[0]] = q[2]; });
        var line = ys.map(function (y, i) { return marked[xs[i]] === "spike" ? null : y; });
        var markOf = function (kind) { return ys.map(function (y, i) { return marked[xs[i]] === kind ? y : null; }); };
        var th = thresholdSeries((doc.thresholds && doc.thresholds.water_level) || {}, "m", null, xs, [10, 6]);
        var noLine = function () { return null; };
        series = [{}, { label: t("metric_water_level") + " (m)", stroke: "#1f5fbf", width: 2.5, fill: "rgba(31,95,191,0.10)", scale: "m", spanGaps: true },
          { label: t("quality_doubtful"), stroke: "#c77700", scale: "m", paths: noLine, points: { show: true, size: 9, fill: "#f0a500" } },
          { label: t("quality_spike"), stroke: "#b00020", scale: "m", paths: noLine, points: { show: true, size: 9, fill: "#b00020" } }
        ].concat(th.series);
        data = [xs, line, markOf("doubtful"), markOf("spike")].concat(th.data);
        opts.scales = { x: { time: true, range: [Date.parse(doc.from) / 1000, Date.parse(doc.to) / 1000] }, m: { auto: true } };
        opts.axes = [timeAxis(), { scale: "m", label: "m", size: 50 }];
      } else {
        var hourly = doc.hourly || [];
        var hx = hourly.map(function (p) { return p[0]; });
        var hy = hourly.map(function (p) { return p[1]; });
        var roll = ((doc.rolling || {})["24h"] || []).map(function (p) { return p[1]; });
        var marks = (doc.thresholds && doc.thresholds.rainfall) || {};
        var t1 = thresholdSeries(marks["1h"] || {}, "mm", "1 " + (state.lang === "en" ? "h" : "jam"), hx, [10, 6]);
        var t24 = thresholdSeries(marks["24h"] || {}, "sum", "24 " + (state.lang === "en" ? "h" : "jam"), hx, [3, 4]);
        series = [{},
          { label: t("hourly") + " (mm)", stroke: "#1f5fbf", fill: "rgba(31,95,191,0.45)", scale: "mm",
            paths: uPlot.paths.bars({ size: [0.8, 40] }), points: { show: false } },
          { label: t("rolling_24h") + " (mm)", stroke: "#5b2a86", width: 2, scale: "sum" }
        ].concat(t1.series, t24.series);
        data = [hx, hy, roll].concat(t1.data, t24.data);
        opts.scales = { x: { time: true }, mm: { range: function (u, min, max) { return [0, Math.max(max, 1)]; } },
          sum: { range: function (u, min, max) { return [0, Math.max(max, 1)]; } } };
        opts.axes = [timeAxis(), { scale: "mm", label: "mm/" + (state.lang === "en" ? "h" : "jam"), size: 50 },
          { scale: "sum", side: 1, label: "mm/24 " + (state.lang === "en" ? "h" : "jam"), grid: { show: false }, size: 50 }];
      }
      opts.series = series;
      if (chart) chart.destroy();
      $("chart").innerHTML = "";
      chart = new uPlot(opts, data, $("chart"));
      var empty = doc.metric === "water_level" ? !(doc.points || []).length : !(doc.hourly || []).some(function (p) { return p[1] > 0; });
      $("chart-note").textContent = (empty ? t("chart_empty", { hours: doc.hours }) + " " : "") + ((doc.events || []).length ? t("chart_events") : "");
      $("chart").setAttribute("data-station", doc.station_id);
    }

    return {
      build: buildChart,
      get: function () { return chart; },
      resize: function () { if (chart) chart.setSize(chartSize()); }
    };
  };
})();
