// Times arrive in UTC (<time data-local>); show them in the viewer's own zone and keep UTC on hover.
// Time fields (<input type="datetime-local" data-utc-input>) arrive holding UTC too: they are shown and
// typed in the viewer's zone, and sent as UTC with a Z, so a URL or an export means one instant.
// Short ids (<code data-copy>) copy the full id on click.
(function () {
  "use strict";
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function local(el) {
    var at = new Date(el.getAttribute("datetime"));
    if (isNaN(at.getTime())) { return; }
    var zone = zoneName();
    var day = at.getFullYear() + "-" + pad(at.getMonth() + 1) + "-" + pad(at.getDate());
    var hm = pad(at.getHours()) + ":" + pad(at.getMinutes());
    // data-local="" shows the date, the clock and the zone; the compact forms ("time": 12:34:56,
    // "hm": 12:34, "date-hm": 2026-12-06 12:34) leave the zone to the tooltip.
    var compact = { time: hm + ":" + pad(at.getSeconds()), hm: hm, "date-hm": day + " " + hm };
    var part = el.getAttribute("data-local");
    if (Object.prototype.hasOwnProperty.call(compact, part)) {
      el.textContent = compact[part];
      if (zone) { el.setAttribute("title", (el.getAttribute("title") || "") + " (shown in " + zone + ")"); }
    } else {
      el.textContent = day + " " + hm + ":" + pad(at.getSeconds()) + (zone ? " " + zone : "");
    }
    el.removeAttribute("data-local");
    el.setAttribute("data-localised", "");
  }

  function zoneName() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return ""; }
  }

  function fieldValue(at) {  // what a datetime-local field holds: local, no zone
    return at.getFullYear() + "-" + pad(at.getMonth() + 1) + "-" + pad(at.getDate()) + "T" +
      pad(at.getHours()) + ":" + pad(at.getMinutes()) + ":" + pad(at.getSeconds());
  }

  function localField(input) {
    if (input.value) {
      var at = new Date(input.value + "Z");
      if (!isNaN(at.getTime())) { input.value = fieldValue(at); }
    }
    input.removeAttribute("data-utc-input");
    input.setAttribute("data-local-input", "");
    var box = input.closest("fieldset");
    var label = box && box.querySelector("[data-zone-name]");
    if (label) { label.textContent = "(your time zone" + (zoneName() ? ": " + zoneName() : "") + ")"; }
  }

  function localise(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(local);
    (root || document).querySelectorAll("input[data-utc-input]").forEach(localField);
  }

  // A form's values (sent by the browser or by htmx, which reads them through FormData): local field
  // times become UTC.
  document.addEventListener("formdata", function (event) {
    event.target.querySelectorAll("input[data-local-input]").forEach(function (input) {
      if (!input.name || !input.value) { return; }
      var at = new Date(input.value);  // a date and time without a zone: the viewer's local time
      if (isNaN(at.getTime())) { return; }
      var utc = at.toISOString().replace(/\.000Z$/, "Z");
      // Typed to the minute: sent to the minute, so an inclusive end takes in that whole minute.
      event.formData.set(input.name, input.value.length <= 16 ? utc.slice(0, 16) + "Z" : utc);
    });
  }, true);

  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  // On swap, not only on settle: swapped-in times would otherwise show in UTC for the settle delay.
  // An outerHTML swap leaves the event on the replaced, detached element: then look everywhere.
  document.addEventListener("htmx:afterSwap", function (event) {
    localise(event.target.isConnected ? event.target : document);
  });
  document.addEventListener("htmx:afterSettle", function (event) { localise(event.target); });
  document.addEventListener("click", function (event) {
    var chip = event.target.closest && event.target.closest("[data-copy]");
    if (!chip || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(chip.getAttribute("data-copy")).then(function () {
      chip.classList.add("copied");
      window.setTimeout(function () { chip.classList.remove("copied"); }, 1200);
    }, function () {});
  });
}());
