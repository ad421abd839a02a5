// Runs pages: click-to-zoom lightbox for output images, and the gallery's "tick 2–4
// runs, then Compare" selection. Delegated listeners only (the CSP forbids inline
// handlers, and htmx keeps replacing the tiles).
(function () {
  "use strict";

  var COMPARE_MIN = 2;
  var COMPARE_MAX = 4;

  // --- lightbox: <a href="full.png" data-lightbox><img></a> ------------------------------

  var lightbox = null;

  function buildLightbox() {
    var dialog = document.createElement("dialog");
    dialog.className = "lightbox";
    dialog.setAttribute("aria-label", "Zoomed output");
    var image = document.createElement("img");
    var close = document.createElement("button");
    close.type = "button";
    close.className = "lightbox-close";
    close.setAttribute("aria-label", "Close");
    close.textContent = "×";
    dialog.append(close, image);
    // Any click closes it: on the image, the backdrop or the button.
    dialog.addEventListener("click", function () { dialog.close(); });
    document.body.append(dialog);
    return dialog;
  }

  function openLightbox(link) {
    lightbox = lightbox || buildLightbox();
    var image = lightbox.querySelector("img");
    var thumb = link.querySelector("img");
    image.src = link.getAttribute("href");
    image.alt = thumb ? thumb.alt : "";
    lightbox.showModal();
  }

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

  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-lightbox]");
    // Ctrl/Cmd/middle click still opens the image in a new tab.
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    openLightbox(link);
  });

  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-compare-pick]")) updateCompare();
  });

  document.addEventListener("DOMContentLoaded", updateCompare);
  // Filters and "Load more" bring new tiles; the back button may restore ticks.
  document.addEventListener("htmx:afterSettle", updateCompare);
  window.addEventListener("pageshow", updateCompare);
})();
