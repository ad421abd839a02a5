// Playground iteration: the seed control and "use this seed", comparing runs, and
// restoring the form from a PNG made here (its `runbase` chunk holds the run recipe).
// The workspace: new cards brought into view, errors focused, one live region that
// says once when each run ends, the prices kept quiet while they don't apply.
// Delegated listeners only (strict CSP, and htmx keeps replacing the elements);
// Ctrl/Cmd+Enter and copy buttons live in app.js.
(function () {
  "use strict";

  var COMPARE_MIN = 2;
  var COMPARE_MAX = 4;
  var MAX_PNG_BYTES = 64 * 1024 * 1024;
  var MAX_RECIPE_BYTES = 256 * 1024;
  var PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

  function notice(message, kind) {
    window.Runbase.notice(message, kind);  // app.js
  }

  function runForm() { return document.getElementById("run-form"); }

  // --- seed control ---------------------------------------------------------------------

  function seedInput() {
    var form = runForm();
    return form && form.querySelector('input[name="seed"]');
  }

  function seedMode() {
    var checked = document.querySelector("#run-form [data-seed-mode]:checked");
    return checked ? checked.value : null;
  }

  function setSeedMode(mode) {
    var radio = document.querySelector('#run-form [data-seed-mode][value="' + mode + '"]');
    if (radio) radio.checked = true;
  }

  function newestSeed() {
    var card = document.querySelector("#cards [data-run-card][data-seed]");
    return card ? card.getAttribute("data-seed") : null;
  }

  function onSeedModeChange(mode) {
    var input = seedInput();
    if (!input) return;
    if (mode === "new") {
      input.value = "";
    } else if (!input.value) {
      var seed = newestSeed();
      if (seed !== null) input.value = seed;
    }
  }

  function useSeed(seed) {
    var input = seedInput();
    if (!input) {
      notice("This model has no seed.", "info");
      return;
    }
    input.value = seed;
    setSeedMode("keep");
    input.focus();
  }

  // A new run in "keep" mode with an empty field used the last seed: show which.
  function afterNewCards() {
    var input = seedInput();
    if (input && seedMode() === "keep" && !input.value) {
      var seed = newestSeed();
      if (seed !== null) input.value = seed;
    }
  }

  // --- compare --------------------------------------------------------------------------

  var selected = [];

  function refreshCompare() {
    var go = document.querySelector("[data-compare-go]");
    if (!go) return;
    var count = selected.length;
    go.hidden = count < COMPARE_MIN || count > COMPARE_MAX;
    go.textContent = count > COMPARE_MAX ? "Compare selected" : "Compare selected (" + count + ")";
  }

  function onCompareChange(box) {
    var id = box.value;
    selected = selected.filter(function (other) { return other !== id; });
    if (box.checked) selected.push(id);
    if (selected.length > COMPARE_MAX) notice("Compare up to " + COMPARE_MAX + " runs at a time.", "info");
    refreshCompare();
  }

  // Polling replaces an active card every second: keep its box ticked.
  function restoreCompare(root) {
    root.querySelectorAll("[data-compare]").forEach(function (box) {
      box.checked = selected.indexOf(box.value) !== -1;
    });
  }

  function goCompare(button) {
    var url = button.getAttribute("data-compare-url");
    window.location.assign(url + "?ids=" + selected.map(encodeURIComponent).join(","));
  }

  // --- picker follows the form -------------------------------------------------------------

  function markPickerModel() {
    var model = document.querySelector('#run-form input[name="model"]');
    if (!model) return;
    document.querySelectorAll("[data-model-option]").forEach(function (option) {
      var href = option.getAttribute("href") || "";
      var matches = href.slice(href.indexOf("model=") + 6) === encodeURIComponent(model.value) ||
        href.slice(href.indexOf("model=") + 6) === model.value;
      if (matches) window.Runbase.markModel(option);  // app.js
    });
  }

  // --- recipe in a PNG --------------------------------------------------------------------

  function ascii(bytes, start, end) {
    var out = "";
    for (var i = start; i < end; i += 1) out += String.fromCharCode(bytes[i]);
    return out;
  }

  function indexOfZero(bytes, start, end) {
    for (var i = start; i < end; i += 1) if (bytes[i] === 0) return i;
    return -1;
  }

  function inflate(bytes) {
    if (typeof DecompressionStream === "undefined") return Promise.reject(new Error("no inflate"));
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buffer) {
      if (buffer.byteLength > MAX_RECIPE_BYTES) throw new Error("recipe too large");
      return new Uint8Array(buffer);
    });
  }

  // The text of the `runbase` tEXt/iTXt/zTXt chunk, or null. Chunks are walked by their
  // length fields; nothing in the file is ever evaluated.
  function recipeText(buffer) {
    var bytes = new Uint8Array(buffer);
    var view = new DataView(buffer);
    if (bytes.length < 8 || PNG_SIGNATURE.some(function (b, i) { return bytes[i] !== b; })) {
      return Promise.resolve(null);
    }
    var position = 8;
    while (position + 12 <= bytes.length) {
      var length = view.getUint32(position);
      var type = ascii(bytes, position + 4, position + 8);
      var start = position + 8;
      var end = start + length;
      if (end + 4 > bytes.length || type === "IEND") break;
      if ((type === "tEXt" || type === "iTXt" || type === "zTXt") && length <= MAX_RECIPE_BYTES + 100) {
        var zero = indexOfZero(bytes, start, Math.min(end, start + 80));
        if (zero !== -1 && ascii(bytes, start, zero) === "runbase") {
          return chunkText(type, bytes, zero + 1, end);
        }
      }
      position = end + 4;
    }
    return Promise.resolve(null);
  }

  function chunkText(type, bytes, start, end) {
    var utf8 = new TextDecoder("utf-8");
    var latin1 = new TextDecoder("latin1");
    if (type === "tEXt") return Promise.resolve(latin1.decode(bytes.subarray(start, end)));
    if (type === "zTXt") return inflate(bytes.subarray(start + 1, end)).then(function (b) { return latin1.decode(b); });
    var compressed = bytes[start] === 1;
    var language = indexOfZero(bytes, start + 2, end);
    var translated = language === -1 ? -1 : indexOfZero(bytes, language + 1, end);
    if (translated === -1) return Promise.resolve(null);
    var text = bytes.subarray(translated + 1, end);
    return compressed ? inflate(text).then(function (b) { return utf8.decode(b); })
      : Promise.resolve(utf8.decode(text));
  }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }

  function restoreFromRecipe(zone, text) {
    var recipe;
    try {
      recipe = JSON.parse(text);
    } catch (error) {
      recipe = null;
    }
    if (!recipe || typeof recipe !== "object") {
      notice("This file's Runbase recipe is damaged.", "error");
      return Promise.resolve();
    }
    var body = new FormData();
    body.append("recipe", text);
    return fetch(zone.getAttribute("data-restore-url"), {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "HX-Request": "true" },
    }).then(function (response) {
      return response.text().then(function (html) {
        if (!response.ok) {
          notice(response.status === 400 ? html : "The settings could not be restored (" + response.status + ").", "error");
          return;
        }
        htmx.swap(runForm(), html, { swapStyle: "outerHTML" });
        markPickerModel();
        notice("Settings restored from the file.", "success");
      });
    });
  }

  function restoreFromFile(zone, file) {
    if (!file) return;
    if (file.size > MAX_PNG_BYTES) {
      notice("That file is too large to read a recipe from.", "error");
      return;
    }
    file.arrayBuffer().then(recipeText).then(function (text) {
      if (text === null) {
        notice("This file carries no Runbase recipe: only PNGs made here do.", "error");
        return null;
      }
      return restoreFromRecipe(zone, text);
    }).catch(function () {
      notice("The file could not be read.", "error");
    });
  }

  function dropZone(event) {
    return event.target.closest && event.target.closest("[data-recipe-drop]");
  }

  function hasFiles(event) {
    return event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") !== -1;
  }

  // --- listeners ----------------------------------------------------------------------------

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("[data-seed-mode]")) onSeedModeChange(target.value);
    else if (target.matches("[data-compare]")) onCompareChange(target);
    else if (target.matches("[data-recipe-file]")) {
      restoreFromFile(target.closest("[data-recipe-drop]"), target.files[0]);
      target.value = "";
    }
  });

  document.addEventListener("input", function (event) {
    if (event.target.matches('#run-form input[name="seed"]') && event.target.value) setSeedMode("keep");
  });

  document.addEventListener("click", function (event) {
    var use = event.target.closest("[data-use-seed]");
    if (use) { useSeed(use.getAttribute("data-use-seed")); return; }
    var go = event.target.closest("[data-compare-go]");
    if (go) goCompare(go);
  });

  document.addEventListener("dragover", function (event) {
    var zone = dropZone(event);
    if (!zone || !hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("is-dragging");
  });

  document.addEventListener("dragleave", function (event) {
    var zone = dropZone(event);
    if (zone && !zone.contains(event.relatedTarget)) zone.classList.remove("is-dragging");
  });

  document.addEventListener("drop", function (event) {
    var zone = dropZone(event);
    if (!zone || !hasFiles(event)) return;
    event.preventDefault();
    zone.classList.remove("is-dragging");
    restoreFromFile(zone, event.dataTransfer.files[0]);
  });

  // --- the workspace ------------------------------------------------------------------------

  // Cards seen while their run was active: only those are announced when they end, so a
  // page load full of finished runs says nothing, and each run is announced once.
  var watching = {};
  var pickedModel = false;

  function isActive(card) {
    var status = card.getAttribute("data-status");
    return status === "pending" || status === "processing";
  }

  function announce(message) {
    var region = document.querySelector("[data-announcer]");
    if (!region) return;
    // Emptied first, so two runs ending with the same words are both read out.
    region.textContent = "";
    window.setTimeout(function () { region.textContent = message; }, 50);
  }

  function watchCard(card) {
    var id = card.getAttribute("data-run-id");
    if (isActive(card)) {
      watching[id] = true;
    } else if (watching[id]) {
      delete watching[id];
      var outcome = card.getAttribute("data-outcome");
      if (outcome) announce(outcome);
    }
  }

  function headerBottom() {
    var bar = document.querySelector(".topbar");
    return bar ? bar.getBoundingClientRect().bottom : 0;
  }

  // A new card is prepended to the runs column, which may be far above or below what
  // the person is looking at: bring it into view (its top under the sticky header).
  function showNewCard() {
    var card = document.querySelector("#cards [data-run-card]");
    if (!card) return;
    var top = card.getBoundingClientRect().top;
    if (top < headerBottom() || top > window.innerHeight - 80) {
      card.scrollIntoView({ block: "start", behavior: "instant" });
    }
  }

  function refreshPrices() {
    var price = document.getElementById("price");
    if (price) htmx.trigger(price, "refresh");
  }

  // The form came back: with errors, focus the first (the whole-form error next to Run,
  // or the first invalid field); after a model was picked, the prompt.
  function afterForm(form) {
    markPickerModel();
    var error = form.querySelector("[data-form-error]") || form.querySelector('[aria-invalid="true"]');
    if (error) {
      error.focus();
    } else if (pickedModel) {
      // This runs when the swap settles, a moment after the new form appeared: whoever
      // is already in one of its fields keeps typing there (moving focus mid-typing sent
      // their keystrokes into the prompt, and the price never heard the change).
      var prompt = form.querySelector("#f-prompt");
      var busy = form.contains(document.activeElement);
      if (prompt && !busy) prompt.focus({ preventScroll: true });
    }
    pickedModel = false;
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "cards") {
      afterNewCards();
      showNewCard();
      refreshPrices();
    }
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.closest && elt.closest("[data-model-option]")) pickedModel = true;
  });

  document.addEventListener("htmx:load", function (event) {
    var elt = event.detail.elt;
    if (!elt || !elt.querySelectorAll) return;
    restoreCompare(elt);
    if (elt.matches("[data-run-card]")) watchCard(elt);
    else elt.querySelectorAll("[data-run-card]").forEach(watchCard);
    if (elt.id === "run-form") afterForm(elt);
  });

  document.addEventListener("DOMContentLoaded", refreshCompare);
})();
