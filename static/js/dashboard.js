// Live pages (the dashboard, a refund's timeline): the connection status, the "updated" time, and a
// fallback poll of every live panel while the SSE stream is down. htmx's SSE extension reconnects.
(function () {
  "use strict";
  var POLL_MS = 10000;
  var timer = null;

  function setState(text, live) {
    var state = document.getElementById("live-state");
    var box = document.getElementById("live-status");
    if (state) { state.textContent = text; }
    if (box) { box.classList.toggle("is-live", live); box.classList.toggle("is-down", !live); }
  }

  function stamp() {
    var t = document.getElementById("last-updated");
    if (!t) { return; }
    var now = new Date();
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    t.setAttribute("datetime", now.toISOString());
    t.setAttribute("title", now.toISOString().slice(0, 19).replace("T", " ") + " UTC");
    // The viewer's own clock, as every other time on the page (static/js/localtime.js)
    t.textContent = pad(now.getHours()) + ":" + pad(now.getMinutes()) + ":" + pad(now.getSeconds());
  }

  function poll() {
    var panels = document.querySelectorAll('[data-live] [hx-trigger~="rw-poll"]');
    if (!panels.length) { stopPolling(); return; }
    panels.forEach(function (el) { htmx.trigger(el, "rw-poll"); });
  }

  function startPolling() { if (!timer) { timer = window.setInterval(poll, POLL_MS); } }
  function stopPolling() { if (timer) { window.clearInterval(timer); timer = null; } }

  // On every (re)connect, read the panels once: an update published between the page's render (or the
  // last message) and the stream opening would otherwise be missed until the next one.
  document.body.addEventListener("htmx:sseOpen", function () { setState("Live", true); stopPolling(); poll(); });
  document.body.addEventListener("htmx:sseError", function () {
    setState("Reconnecting… refreshing every " + POLL_MS / 1000 + " s", false);
    startPolling();
  });
  document.body.addEventListener("htmx:sseMessage", stamp);
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.closest && event.target.closest("[data-live]")) { stamp(); }
  });
})();
