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
})();
