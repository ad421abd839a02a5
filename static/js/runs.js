// Runs pages: the gallery's "tick 2–4 runs, then Compare" selection (the lightbox
// for outputs is app.js's). Delegated listeners only (the CSP forbids inline
// handlers, and htmx keeps replacing the tiles).
(function () {
  "use strict";

  var COMPARE_MIN = 2;
  var COMPARE_MAX = 4;

  // --- compare selection -----------------------------------------------------------------

  function updateCompare() {
    var form = document.querySelector("[data-compare-form]");
    if (!form) return;
    var picked = form.querySelectorAll("[data-compare-pick]:checked").length;
    var button = form.querySelector("[data-compare-submit]");
    var count = form.querySelector("[data-compare-count]");
    var ok = picked >= COMPARE_MIN && picked <= COMPARE_MAX;
    if (button) button.disabled = !ok;
    if (!count) return;
    if (picked === 0) count.textContent = "Tick 2–4 runs to compare them side by side.";
    else if (picked < COMPARE_MIN) count.textContent = "1 run selected: tick one more to compare.";
    else if (picked > COMPARE_MAX) count.textContent = picked + " runs selected: compare at most " + COMPARE_MAX + ".";
    else count.textContent = picked + " runs selected.";
    form.querySelectorAll("[data-run-tile]").forEach(function (tile) {
      var box = tile.querySelector("[data-compare-pick]");
      tile.classList.toggle("is-picked", Boolean(box && box.checked));
    });
  }

  // --- listeners -------------------------------------------------------------------------

  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-compare-pick]")) updateCompare();
  });

  document.addEventListener("DOMContentLoaded", updateCompare);
  // Filters and "Load more" bring new tiles; the back button may restore ticks.
  document.addEventListener("htmx:afterSettle", updateCompare);
  window.addEventListener("pageshow", updateCompare);
})();

// The run page's Share menu (a <details>) closes with Escape, focus back on its button,
// like other pop-ups; and a click elsewhere on the page closes it.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var menu = event.target.closest && event.target.closest("details[data-share-menu][open]");
    if (!menu) return;
    menu.open = false;
    menu.querySelector("summary").focus();
  });
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details[data-share-menu][open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });
})();
