// Times arrive in UTC (<time data-local>); show them in the viewer's own zone and keep UTC on hover.
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

  function localise(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(local);
  }

  document.addEventListener("DOMContentLoaded", function () { localise(document); });
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
