/*
 * nport-twisted web console: the live monitor and the operating-mode chooser.
 * Plain JavaScript, no framework, no build step, nothing loaded from elsewhere.
 */
(function () {
  "use strict";

  // Operating Settings: choosing a mode shows that mode's fields (as on the device).
  var mode = document.getElementById("mode");
  if (mode && mode.form && mode.form.classList.contains("settings")) {
    var choose = mode.form.querySelector("button.choose");
    if (choose) { choose.hidden = true; }
    mode.addEventListener("change", function () {
      var url = new URL(window.location.href);
      url.searchParams.set("mode", mode.value);
      url.searchParams.delete("saved");
      window.location.assign(url.toString());
    });
  }

  // Monitor: refresh the tables from /api/v1/status without reloading the page.
  var monitor = document.getElementById("monitor");
  if (!monitor) { return; }
  var interval = parseInt(monitor.getAttribute("data-interval"), 10) || 1000;
  var state = document.getElementById("monitor-state");
  var updates = 0;

  function show(text) { if (state) { state.textContent = text; } }
  show("Refreshing every second.");

  function update(data) {
    data.ports.forEach(function (port) {
      var display = port.display || {};
      Object.keys(display).forEach(function (key) {
        var cells = monitor.querySelectorAll(
          '[data-port="' + port.port + '"][data-key="' + key + '"]');
        for (var i = 0; i < cells.length; i++) {
          if (cells[i].textContent !== display[key]) { cells[i].textContent = display[key]; }
        }
      });
    });
    updates += 1;
    monitor.setAttribute("data-updates", String(updates));
    show("Refreshing every second; last update " + new Date().toLocaleTimeString() + ".");
  }

  function poll() {
    fetch("/api/v1/status", {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (response.status === 401 || response.status === 403) {
        show("Not refreshing: the session ended. Reload the page to log in again.");
        return null;
      }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json().then(function (data) {
        update(data);
        window.setTimeout(poll, interval);
      });
    }).catch(function () {
      show("No answer from the device; retrying.");
      window.setTimeout(poll, interval * 3);
    });
  }

  window.setTimeout(poll, interval);

  // Monitor graphs: per-port byte rates and an event strip, inline SVG from /api/v1/history.
  var graphs = document.getElementById("graphs");
  if (!graphs) { return; }
  var SVG = "http://www.w3.org/2000/svg";
  var W = 600, TOP = 14, H = 100, STRIP = 18;   // plot area and event strip, in viewBox units
  var draws = 0;

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function rate(bps) {
    if (bps >= 1e6) { return (bps / 1e6).toFixed(1) + " MB/s"; }
    if (bps >= 1e3) { return (bps / 1e3).toFixed(1) + " kB/s"; }
    return Math.round(bps) + " B/s";
  }

  function lineKind(kind) {
    if (kind === "connect" || kind === "disconnect") { return "ev-" + kind; }
    if (kind === "device") { return "ev-device"; }
    return "ev-line";
  }

  function drawPort(figure, port, now, windowS) {
    var start = now - windowS;
    var x = function (t) { return Math.max(0, Math.min(W, (t - start) / windowS * W)); };
    var top = 1;
    port.samples.forEach(function (s) { top = Math.max(top, s.tx_bps, s.rx_bps); });
    var y = function (v) { return TOP + H - v / top * H; };
    var svg = el("svg", { viewBox: "0 0 " + W + " " + (TOP + H + STRIP + 4), role: "img",
                          "aria-label": "Port " + port.port + " byte rates and events" });
    el("rect", { "class": "frame", x: 0, y: TOP, width: W, height: H }, svg);
    for (var m = 1; m < 3; m++) {
      el("line", { "class": "grid", x1: 0, x2: W, y1: TOP + H * m / 3, y2: TOP + H * m / 3 }, svg);
    }
    var label = el("text", { "class": "scale", x: 2, y: 10 }, svg);
    label.textContent = "max " + rate(top) + " (-" + Math.round(windowS / 60) + " min … now)";
    ["tx", "rx"].forEach(function (key) {
      // A step per bucket (its start to its end), so that even one bucket shows.
      var points = [];
      port.samples.forEach(function (s) {
        var v = y(s[key + "_bps"]).toFixed(1);
        points.push(x(s.t).toFixed(1) + "," + v, x(s.t + s.s).toFixed(1) + "," + v);
      });
      var line = el("polyline", { "class": key, points: points.join(" ") }, svg);
      line.setAttribute("data-last", String(port.samples.length ?
        port.samples[port.samples.length - 1][key] : 0));
    });
    var stripTop = TOP + H + 4;
    el("rect", { "class": "frame", x: 0, y: stripTop, width: W, height: STRIP }, svg);
    port.events.forEach(function (e) {
      var mark = el("line", { "class": "ev " + lineKind(e.kind) + (e.on ? " on" : " off"),
                              x1: x(e.t), x2: x(e.t), y1: stripTop + 1, y2: stripTop + STRIP - 1 },
                    svg);
      el("title", {}, mark).textContent = e.text;
    });
    var plot = figure.querySelector(".plot");
    while (plot.firstChild) { plot.removeChild(plot.firstChild); }
    plot.appendChild(svg);
    var list = figure.querySelector("ol.timeline");
    if (list) {
      while (list.firstChild) { list.removeChild(list.firstChild); }
      port.events.slice(-20).reverse().forEach(function (e) {
        var item = document.createElement("li");
        var ago = Math.max(0, Math.round(now - e.t));
        item.textContent = ago + " s ago: " + e.text;
        list.appendChild(item);
      });
    }
  }

  function drawAll(data) {
    var windowS = data.window_s || 900;
    data.ports.forEach(function (port) {
      var figure = graphs.querySelector('figure[data-port="' + port.port + '"]');
      if (figure) { drawPort(figure, port, data.now, windowS); }
    });
    draws += 1;
    graphs.setAttribute("data-draws", String(draws));
  }

  function pollHistory() {
    fetch("/api/v1/history", {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json().then(function (data) {
        drawAll(data);
        window.setTimeout(pollHistory, 3000);
      });
    }).catch(function () {
      window.setTimeout(pollHistory, 10000);
    });
  }

  pollHistory();
})();
