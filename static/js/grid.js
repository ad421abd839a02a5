// Grids: keep the grid's price quiet while "Grid" is off, and on a grid's page say how
// many cells have finished (the cards replace themselves while they poll, so one
// persistent live region speaks for them) and let "Edit & rerun" open the Playground.
(function () {
  "use strict";

  function gridOn() {
    var toggle = document.querySelector("#run-form [data-grid-toggle]");
    return Boolean(toggle && toggle.checked);
  }

  // The grid's price only matters while "Grid" is ticked.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (elt && elt.id === "grid-price" && !gridOn()) event.preventDefault();
  });

  // A card's "Edit & rerun" swaps the form in the Playground; a grid's page has no form,
  // so the link is followed as a plain link to the Playground (its href) instead.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-grid-table] [data-edit-rerun]");
    if (link && !document.getElementById("run-form")) event.stopPropagation();
  }, true);

  var announced = null;
  function progress() {
    var cards = document.querySelectorAll("[data-grid-table] [data-run-card]");
    if (!cards.length) return;
    var done = 0;
    cards.forEach(function (card) {
      var status = card.getAttribute("data-status");
      if (status === "succeeded" || status === "failed") done += 1;
    });
    var text = done + " of " + cards.length + " finished";
    var shown = document.querySelector("[data-grid-progress]");
    if (shown) shown.textContent = text;
    if (done === cards.length && announced !== text) {
      var region = document.querySelector("[data-grid-announcer]");
      if (region && announced !== null) region.textContent = "Grid finished: " + text + ".";
    }
    announced = text;
  }

  document.addEventListener("htmx:afterSwap", progress);
  document.addEventListener("DOMContentLoaded", progress);
})();
