// Runbase page behaviour: copy buttons, the model picker's search, Ctrl/Cmd+Enter to
// run, confirmations, notices for failed requests, and resuming a card's polling after
// a network blip. Everything is wired with delegated listeners, because the CSP forbids
// inline handlers and htmx keeps replacing the elements.
(function () {
  "use strict";

  var ACTIVE = ["pending", "processing"];
  var RETRY_MS = [2000, 4000, 8000, 15000];

  // --- notices -----------------------------------------------------------------------

  function notice(message, kind) {
    var box = document.getElementById("notices");
    if (!box) return;
    var item = document.createElement("div");
    item.className = "notice notice-" + (kind || "error");
    item.setAttribute("role", kind === "error" ? "alert" : "status");
    var text = document.createElement("span");
    text.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "notice-close";
    close.setAttribute("data-dismiss", "");
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    item.append(text, close);
    box.append(item);
    window.setTimeout(function () { item.remove(); }, 8000);
  }

  // Shared with the page scripts (playground.js, ...), which load after this one.
  window.Runbase = { notice: notice, markModel: function (option) { markCurrent(option); } };

  // Flash messages rendered with the page go away by themselves too.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#notices .notice").forEach(function (item) {
      window.setTimeout(function () { item.remove(); }, 8000);
    });
  });

  // --- copy buttons: <button data-copy="text"> ------------------------------------------

  function copyText(text) {
    // The async clipboard exists only in secure contexts (https, localhost); plain-http
    // self-hosted servers need the old selection-based copy.
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    var ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function onCopy(button) {
    var label = button.textContent;
    copyText(button.getAttribute("data-copy")).then(function () {
      button.textContent = "Copied";
      button.classList.add("is-copied");
    }, function () {
      button.textContent = "Press Ctrl+C";
    }).finally(function () {
      window.setTimeout(function () {
        button.textContent = label;
        button.classList.remove("is-copied");
      }, 1500);
    });
  }

  // --- model picker --------------------------------------------------------------------

  function filterModels(query) {
    var terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    document.querySelectorAll("[data-picker-group]").forEach(function (group) {
      var visibleInGroup = 0;
      group.querySelectorAll("[data-model-option]").forEach(function (option) {
        var haystack = option.getAttribute("data-search").toLowerCase();
        var match = terms.every(function (term) { return haystack.indexOf(term) !== -1; });
        option.parentElement.hidden = !match;
        if (match) visibleInGroup += 1;
      });
      group.hidden = visibleInGroup === 0;
      shown += visibleInGroup;
    });
    var empty = document.querySelector("[data-picker-empty]");
    if (empty) empty.hidden = shown !== 0;
    // A search that matches models not enabled here shows them, with what they need.
    var more = document.querySelector("[data-picker-more]");
    if (more && terms.length && more.querySelector("[data-picker-group]:not([hidden])")) more.open = true;
  }

  // The chosen model: aria-current/aria-selected, and the tab stop of its list (each
  // list is one tab stop; the arrow keys move inside it).
  function markCurrent(option) {
    document.querySelectorAll("[data-model-option]").forEach(function (other) {
      other.removeAttribute("aria-current");
      other.setAttribute("aria-selected", "false");
    });
    option.setAttribute("aria-current", "true");
    option.setAttribute("aria-selected", "true");
    setStop(option);
  }

  function setStop(option) {
    var list = option.closest("[data-picker-listbox]");
    if (!list) return;
    list.querySelectorAll("[data-model-option]").forEach(function (other) {
      other.setAttribute("tabindex", other === option ? "0" : "-1");
    });
  }

  function visibleOptions(list) {
    return Array.prototype.filter.call(list.querySelectorAll("[data-model-option]"),
      function (option) { return option.offsetParent !== null; });
  }

  function moveInList(option, key) {
    var options = visibleOptions(option.closest("[data-picker-listbox]"));
    var index = options.indexOf(option);
    var next = key === "Home" ? 0 : key === "End" ? options.length - 1
      : key === "ArrowDown" ? Math.min(index + 1, options.length - 1) : Math.max(index - 1, 0);
    if (options[next]) {
      setStop(options[next]);
      options[next].focus();
    }
  }

  function firstVisibleOption() {
    return Array.prototype.find.call(document.querySelectorAll("[data-model-option]"),
      function (option) { return option.offsetParent !== null; });
  }


  // --- listeners -----------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) { onCopy(copy); return; }
    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) { dismiss.parentElement.remove(); return; }
    var option = event.target.closest("[data-model-option]");
    if (option) markCurrent(option);
  });

  document.addEventListener("input", function (event) {
    if (event.target.matches("[data-picker-search]")) filterModels(event.target.value);
  });

  document.addEventListener("focusin", function (event) {
    if (event.target.matches("[data-select-on-focus]")) event.target.select();
  });

  document.addEventListener("keydown", function (event) {
    var option = event.target.closest && event.target.closest("[data-model-option]");
    if (option && ["ArrowDown", "ArrowUp", "Home", "End"].indexOf(event.key) !== -1) {
      event.preventDefault();
      moveInList(option, event.key);
      return;
    }
    if (option && event.key === " ") {  // a listbox option is chosen with Space too
      event.preventDefault();
      option.click();
      return;
    }
    if (event.key !== "Enter") return;
    if (event.target.matches("[data-picker-search]")) {
      event.preventDefault();
      var first = firstVisibleOption();
      if (first) first.click();
      return;
    }
    if (event.ctrlKey || event.metaKey) {
      var form = event.target.closest("form[data-run-form]");
      var submit = form && form.querySelector("button[type=submit]");
      // requestSubmit() ignores a disabled button, so check it: unavailable models and
      // runs already being sent must not be submitted from the keyboard either.
      if (submit && !submit.disabled) {
        event.preventDefault();
        form.requestSubmit(submit);
      }
    }
  });

  // Forms with data-confirm ask before they are sent (e.g. deleting an API key).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  }, true);

  // --- htmx ----------------------------------------------------------------------------

  // A run was accepted: the errors shown for an earlier attempt no longer apply.
  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt;
    // A 422 (form with errors) replaced the form, so elt is then its parent, not a form.
    if (event.detail.xhr.status >= 300 || !elt.matches || !elt.matches("form[data-run-form]")) return;
    elt.querySelectorAll(".field-error, [data-form-error]").forEach(function (node) { node.remove(); });
    elt.querySelectorAll(".has-error").forEach(function (node) { node.classList.remove("has-error"); });
    elt.querySelectorAll("[aria-invalid]").forEach(function (node) { node.removeAttribute("aria-invalid"); });
  });

  function activeCard(elt) {
    return elt && elt.matches && elt.matches("[data-run-card]") &&
      ACTIVE.indexOf(elt.getAttribute("data-status")) !== -1;
  }

  // A polling card whose request failed (server restarting, network blip) would stop
  // updating for good; ask again with a growing pause instead.
  function retryCard(card) {
    var attempt = Number(card.getAttribute("data-retries") || "0");
    card.setAttribute("data-retries", String(attempt + 1));
    window.setTimeout(function () {
      if (!card.isConnected) return;
      htmx.ajax("GET", card.getAttribute("hx-get"), { source: card, target: card, swap: "outerHTML" });
    }, RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (activeCard(event.detail.elt) && xhr.status >= 500) { retryCard(event.detail.elt); return; }
    var message = "The request failed (" + xhr.status + " " + xhr.statusText + ").";
    if (xhr.status === 400 && /csrf/i.test(xhr.responseText)) {
      message = "This page has expired. Reload it and try again.";
    } else if (xhr.status === 404) {
      message = "Not found: it may have been deleted, or belong to another account.";
    }
    notice(message, "error");
  });

  document.addEventListener("htmx:sendError", function (event) {
    if (activeCard(event.detail.elt)) { retryCard(event.detail.elt); return; }
    notice("Couldn't reach the server. Check your connection and try again.", "error");
  });
})();
