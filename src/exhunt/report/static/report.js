/* exhunt report page script: evidence toggles and the findings timeline (uPlot).
   Data comes from the JSON block #chart-data and is only ever put into the page as text. */
(function () {
  "use strict";

  function setOpen(body, open) {
    var row = body.querySelector("tr.evidence-row");
    var button = body.querySelector("button.toggle");
    if (!row || !button) return;
    row.hidden = !open;
    button.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function toggle(body) {
    var row = body.querySelector("tr.evidence-row");
    if (row) setOpen(body, row.hidden);
  }

  function bodies() {
    return Array.prototype.slice.call(document.querySelectorAll("tbody.finding"));
  }

  function goToFinding(number) {
    var body = document.getElementById("f" + number);
    if (!body) return;
    bodies().forEach(function (b) { b.classList.remove("highlight"); });
    setOpen(body, true);
    body.classList.add("highlight");
    body.scrollIntoView({ block: "start" });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    var link = target.closest("a.finding-link");
    if (link) {
      event.preventDefault();
      goToFinding(link.getAttribute("data-finding"));
      return;
    }
    if (target.closest("tr.evidence-row")) return;
    var row = target.closest("tr.finding-row");
    if (row) toggle(row.parentElement);
  });

  var expandAll = document.getElementById("expand-all");
  var collapseAll = document.getElementById("collapse-all");
  if (expandAll) expandAll.addEventListener("click", function () { bodies().forEach(function (b) { setOpen(b, true); }); });
  if (collapseAll) collapseAll.addEventListener("click", function () { bodies().forEach(function (b) { setOpen(b, false); }); });
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details.record").forEach(function (d) { d.open = true; });
  });

  // --- timeline chart ---------------------------------------------------------------------------
  var holder = document.getElementById("timeline-chart");
  var tip = document.getElementById("timeline-tip");
  var data;
  try {
    data = JSON.parse(document.getElementById("chart-data").textContent);
  } catch (e) {
    data = { points: [], findings: {}, severities: [] };
  }
  var points = data.points || [];
  if (!holder) return;
  if (!points.length || typeof uPlot === "undefined") {
    var none = document.createElement("p");
    none.className = "muted";
    none.textContent = points.length ? "The chart library did not load." : "No timed evidence to plot.";
    holder.appendChild(none);
    holder.setAttribute("data-marks", "0");
    return;
  }
  var names = data.severities; // index = severity rank, info 0 .. critical 4
  var colors = ["#7f8c8d", "#2e86c1", "#d68910", "#c0392b", "#8b0000"];
  var xs = points.map(function (p) { return p[0]; });
  var series = [{}];
  var columns = [xs];
  for (var rank = 0; rank < names.length; rank++) {
    var present = false;
    var ys = points.map(function (p) { if (p[1] === rank) { present = true; return rank; } return null; });
    if (!present) continue;
    columns.push(ys);
    series.push({
      label: names[rank],
      stroke: colors[rank] || "#333",
      fill: colors[rank] || "#333",
      paths: function () { return null; },
      points: { show: true, size: 9, width: 1, fill: colors[rank] || "#333" }
    });
  }

  function utc(ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); }
  function stamp(ts) { return new Date(ts * 1000).toISOString().replace("T", " ").replace(".000Z", "Z"); }

  var downAt = null;
  var hover = null; // index of the mark under the cursor
  var RADIUS = 12; // pixels

  // the mark nearest the cursor within RADIUS pixels (marks are sorted by time)
  function nearest(u) {
    var i = u.cursor.idx;
    if (i == null || u.cursor.left < 0) return null;
    var best = null, bestDist = RADIUS * RADIUS;
    for (var dir = -1; dir <= 1; dir += 2) {
      for (var j = dir < 0 ? i : i + 1; j >= 0 && j < points.length; j += dir) {
        var dx = u.valToPos(points[j][0], "x") - u.cursor.left;
        if (Math.abs(dx) > RADIUS) break;
        var dy = u.valToPos(points[j][1], "y") - u.cursor.top;
        var dist = dx * dx + dy * dy;
        if (dist <= bestDist) { best = j; bestDist = dist; }
      }
    }
    return best;
  }
  function width() { return Math.max(320, holder.clientWidth - 4); }
  var plot = new uPlot({
    width: width(),
    height: 300,
    tzDate: utc,
    legend: { show: false },
    cursor: { drag: { x: true, y: false }, points: { size: 12 } },
    scales: { x: { time: true }, y: { auto: false, range: [-0.5, names.length - 0.5] } },
    axes: [
      { label: "time (UTC)", labelSize: 20 },
      {
        splits: function () { return names.map(function (_, i) { return i; }); },
        values: function (u, vals) { return vals.map(function (v) { return names[v] || ""; }); },
        size: 80
      }
    ],
    series: series,
    hooks: {
      setCursor: [function (u) {
        hover = nearest(u);
        if (hover == null) { tip.hidden = true; return; }
        var p = points[hover];
        var label = data.findings[String(p[2])] || ["finding " + p[2], names[p[1]], "", ""];
        tip.textContent = stamp(p[0]) + " · " + String(label[1]).toUpperCase() + " · " + label[0] + (label[2] ? " · " + label[2] : "") + " (" + label[3] + " hits) — click to open";
        var box = u.over.getBoundingClientRect();
        tip.style.left = Math.min(window.innerWidth - 360, box.left + u.cursor.left + 12) + "px";
        tip.style.top = (box.top + u.cursor.top + 12) + "px";
        tip.hidden = false;
      }]
    }
  }, columns, holder);
  plot.over.addEventListener("mousedown", function (e) { downAt = [e.clientX, e.clientY]; });
  plot.over.addEventListener("mouseleave", function () { tip.hidden = true; });
  // a click opens the finding under the cursor, unless it was a drag (zoom) or half of a
  // double-click (reset zoom)
  var pending = null;
  plot.over.addEventListener("click", function (e) {
    if (downAt && (Math.abs(e.clientX - downAt[0]) > 3 || Math.abs(e.clientY - downAt[1]) > 3)) return;
    var i = hover;
    if (i == null) return;
    clearTimeout(pending);
    pending = setTimeout(function () { goToFinding(points[i][2]); }, 300);
  });
  plot.over.addEventListener("dblclick", function () { clearTimeout(pending); });
  if (data.view) plot.setScale("x", { min: data.view[0], max: data.view[1] });
  window.addEventListener("resize", function () { plot.setSize({ width: width(), height: 300 }); });
  holder.setAttribute("data-marks", String(points.length));
  holder.exhuntPlot = plot; // for the page's own tests: point positions, zoom state
})();
