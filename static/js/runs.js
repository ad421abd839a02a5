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

// Compare: the first images of the runs zoom and move together ([data-zoom-group]):
// buttons, drag, wheel, or the keyboard on a focused image (arrows move, + and − zoom,
// 0 resets). An A/B wipe shows one image over the other up to the slider's position.
// Transforms are set through the CSSOM (the CSP forbids style attributes, not this).
(function () {
  "use strict";

  var LEVELS = [1, 1.5, 2, 3, 4, 6, 8];
  var STEP = 0.1;  // arrow keys move by a tenth of the view

  function setUp(group) {
    var state = { level: 0, x: 0, y: 0 };  // x, y: offset as fractions of the view
    var views = Array.prototype.slice.call(group.querySelectorAll("[data-zoom-view]"));
    var readout = group.querySelector("[data-zoom-level]");

    function clamp() {
      // Never move an image out of its view: at zoom s the edge may move (s − 1) / 2.
      var room = (LEVELS[state.level] - 1) / 2;
      state.x = Math.max(-room, Math.min(room, state.x));
      state.y = Math.max(-room, Math.min(room, state.y));
    }

    function apply() {
      clamp();
      var scale = LEVELS[state.level];
      views.forEach(function (view) {
        var img = view.querySelector("img");
        img.style.transform = "translate(" + (state.x * 100) + "%, " + (state.y * 100) + "%) scale(" + scale + ")";
        view.classList.toggle("is-zoomed", scale > 1);
      });
      readout.textContent = Math.round(scale * 100) + "%";
    }

    function zoom(delta) {
      state.level = Math.max(0, Math.min(LEVELS.length - 1, state.level + delta));
      apply();
    }

    function reset() { state.level = 0; state.x = 0; state.y = 0; apply(); }

    group.addEventListener("click", function (event) {
      var stepButton = event.target.closest("[data-zoom-step]");
      if (stepButton) zoom(Number(stepButton.getAttribute("data-zoom-step")));
      if (event.target.closest("[data-zoom-reset]")) reset();
    });

    group.addEventListener("keydown", function (event) {
      if (!event.target.matches("[data-zoom-view]")) return;
      var moves = { ArrowLeft: [STEP, 0], ArrowRight: [-STEP, 0], ArrowUp: [0, STEP], ArrowDown: [0, -STEP] };
      if (moves[event.key]) {
        state.x += moves[event.key][0];
        state.y += moves[event.key][1];
      } else if (event.key === "+" || event.key === "=") {
        state.level = Math.min(LEVELS.length - 1, state.level + 1);
      } else if (event.key === "-" || event.key === "_") {
        state.level = Math.max(0, state.level - 1);
      } else if (event.key === "0") {
        state.level = 0; state.x = 0; state.y = 0;
      } else {
        return;
      }
      event.preventDefault();
      apply();
    });

    var drag = null;
    group.addEventListener("pointerdown", function (event) {
      var view = event.target.closest("[data-zoom-view]");
      if (!view || LEVELS[state.level] === 1) return;
      drag = { view: view, x: event.clientX, y: event.clientY, startX: state.x, startY: state.y };
      view.setPointerCapture(event.pointerId);
    });
    group.addEventListener("pointermove", function (event) {
      if (!drag) return;
      var box = drag.view.getBoundingClientRect();
      state.x = drag.startX + (event.clientX - drag.x) / box.width;
      state.y = drag.startY + (event.clientY - drag.y) / box.height;
      apply();
    });
    ["pointerup", "pointercancel"].forEach(function (name) {
      group.addEventListener(name, function () { drag = null; });
    });
    group.addEventListener("wheel", function (event) {
      if (!event.target.closest("[data-zoom-view]")) return;
      event.preventDefault();
      zoom(event.deltaY < 0 ? 1 : -1);
    }, { passive: false });
    apply();
  }

  function setWipe(range) {
    var wipe = document.querySelector("[data-wipe]");
    if (!wipe) return;
    var at = Number(range.value);
    wipe.querySelector("[data-wipe-top]").style.clipPath = "inset(0 " + (100 - at) + "% 0 0)";
    wipe.querySelector("[data-wipe-line]").style.left = at + "%";
    var value = document.querySelector("[data-wipe-value]");
    if (value) value.textContent = at + "%";
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches("[data-wipe-range]")) setWipe(event.target);
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-zoom-group]").forEach(setUp);
    var range = document.querySelector("[data-wipe-range]");
    if (range) setWipe(range);
  });
})();
