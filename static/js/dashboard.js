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

  // A live area must not be redrawn while a request sent from inside it is out: htmx forgets the
  // request of an element it removes, so a click on a panel's link (a boosted navigation) or a form
  // lost its answer when an update swapped the area meanwhile. Nor while the person is in one of its
  // form fields. Such an update is held, and once the last of those requests has ended (without
  // leaving the page), or the person has left the field, the area reads itself afresh; a
  // section that polls on a timer simply skips the tick.
  var LIVE = "[data-live] [sse-swap], [data-live] [hx-trigger~='rw-poll']";
  var REREAD = LIVE + ", [hx-get][hx-trigger^='every ']";
  var inFlight = new Set();
  var stale = new Set();

  // A field the person is in is theirs: a redraw would replace it empty (a rejection's reason typed
  // while the stream reconnected was lost that way).
  function editing(area) {
    var focused = document.activeElement;
    return !!(focused && focused !== document.body && area.contains(focused) && focused.form);
  }

  // A field typed into and then left does not hold its area: the area is redrawn (what it shows may
  // have moved on meanwhile), and the typed text goes back into the same form's field wherever the
  // new drawing still has it. A held area would otherwise stay stale for as long as the text stayed.
  var FIELDS = "input:not([type=hidden]), textarea";
  var LIVE_FIELDS = "[data-live] input:not([type=hidden]), [data-live] textarea";
  var kept = null;
  function ticked(field) { return field.type === "checkbox" || field.type === "radio"; }
  function fieldKey(field) {
    var key = (field.form ? field.form.getAttribute("action") || "" : "") + "|" + field.name;
    return ticked(field) ? key + "=" + field.value : key;
  }
  function keep(area) {
    var found = {};
    (area && area.querySelectorAll ? area.querySelectorAll(FIELDS) : []).forEach(function (field) {
      var moved = ticked(field) ? field.checked !== field.defaultChecked : field.value !== field.defaultValue;
      if (field.name && moved) { found[fieldKey(field)] = ticked(field) ? field.checked : field.value; }
    });
    kept = Object.keys(found).length ? found : null;
  }
  function restore() {
    var found = kept;
    kept = null;
    if (!found) { return; }
    document.querySelectorAll(LIVE_FIELDS).forEach(function (field) {
      var key = fieldKey(field);
      if (!Object.prototype.hasOwnProperty.call(found, key)) { return; }
      if (ticked(field)) { field.checked = found[key]; } else { field.value = found[key]; }
    });
  }
  // A press on something in the area (pointer down, not yet up) holds it too. A browser that does not
  // focus a button it clicks (Safari, Firefox on macOS) blurs the field at the press, which lets the
  // held redraw go; one landing before the pointer comes up took the button, and the click, away.
  var pressing = null;
  document.body.addEventListener("pointerdown", function (event) { pressing = event.target; }, true);
  function released() { window.setTimeout(function () { pressing = null; catchUp(); }, 50); }
  document.body.addEventListener("pointerup", released, true);
  document.body.addEventListener("pointercancel", released, true);

  function busy(area) {
    var found = editing(area) || !!(pressing && pressing.isConnected && area.contains(pressing));
    inFlight.forEach(function (el) { if (el !== area && area.contains(el)) { found = true; } });
    return found;
  }
  document.body.addEventListener("htmx:beforeSend", function (event) { inFlight.add(event.detail.elt); });
  function catchUp() {
    stale.forEach(function (area) {
      if (!area.isConnected) { stale.delete(area); return; }
      if (!busy(area)) { stale.delete(area); htmx.trigger(area, "rw-poll"); }
    });
  }
  document.body.addEventListener("htmx:afterRequest", function (event) {
    if (inFlight.delete(event.detail.elt)) { catchUp(); }
  });
  document.body.addEventListener("focusout", function () { window.setTimeout(catchUp, 0); });
  // Whether a re-read by ``elt`` into ``target`` must wait (a live area is then marked stale).
  function held(elt, target) {
    if (!elt.matches || !elt.matches(REREAD) || !(busy(elt) || busy(target || elt))) { return false; }
    if (elt.matches(LIVE)) { stale.add(elt); }
    return true;
  }
  document.body.addEventListener("htmx:beforeRequest", function (event) {
    if (held(event.detail.elt, event.detail.target)) { event.preventDefault(); }
  });
  // A re-read already out when the click or the typing began: its answer is not swapped in.
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    // Fired on the target: detail.elt is the target there, the request's element is in requestConfig.
    var config = event.detail.requestConfig;
    var elt = (config && config.elt) || event.detail.elt;
    if (held(elt, event.detail.target)) { event.detail.shouldSwap = false; return; }
    if (event.detail.shouldSwap && elt.matches && elt.matches(REREAD)) { keep(event.detail.target); }
  });
  document.body.addEventListener("htmx:afterSwap", restore);
  document.body.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (busy(event.target)) { event.preventDefault(); stale.add(event.target); } else { keep(event.target); }
  });
  document.body.addEventListener("htmx:sseMessage", restore);
})();
