// Reference images from your own files: the drop zone under a model's image list.
//
// The text area of image URLs stays the field (the form posts it as always, and URLs can
// still be typed); this script adds a file picker, drag and drop, and paste from the
// clipboard. Each file is uploaded at once to the Playground (session + CSRF token), and
// its URL becomes a line of the text area; the thumbnails below mirror those lines and can
// be removed and reordered with buttons. The model's own maximum count is kept, and every
// problem is shown right under the field.
(function () {
  "use strict";

  var MEGABYTE = 1024 * 1024;

  function zones() {
    return document.querySelectorAll("[data-uploads]");
  }

  function textareaOf(zone) {
    return document.getElementById(zone.getAttribute("data-for"));
  }

  function urls(zone) {
    return textareaOf(zone).value.split(/\r?\n/).map(function (line) { return line.trim(); })
      .filter(function (line) { return line !== ""; });
  }

  function setUrls(zone, list) {
    var area = textareaOf(zone);
    area.value = list.join("\n");
    // Anything else listening to the form (the price, a kept draft) learns of the change.
    area.dispatchEvent(new Event("input", { bubbles: true }));
    area.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function maxItems(zone) {
    var value = parseInt(zone.getAttribute("data-max-items"), 10);
    return isNaN(value) ? Infinity : value;
  }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }

  // --- messages -----------------------------------------------------------------------------

  function showError(zone, message) {
    var box = zone.querySelector("[data-upload-error]");
    box.textContent = message;
    box.hidden = false;
    // On a phone the message may land under the sticky action bar: bring it into view.
    if (box.scrollIntoView) box.scrollIntoView({ block: "center" });
    zone.querySelector("[data-upload-input]").setAttribute("aria-invalid", "true");
  }

  function clearError(zone) {
    var box = zone.querySelector("[data-upload-error]");
    box.textContent = "";
    box.hidden = true;
    zone.querySelector("[data-upload-input]").removeAttribute("aria-invalid");
  }

  function announce(zone, message) {
    zone.querySelector("[data-upload-status]").textContent = message;
  }

  // --- thumbnails ---------------------------------------------------------------------------

  function sameOrigin(url) {
    try {
      return new URL(url, window.location.href).origin === window.location.origin;
    } catch (error) {
      return false;
    }
  }

  // What a line is, in words: stored names are random, so ours are named by their kind.
  function shortName(url) {
    try {
      var parsed = new URL(url, window.location.href);
      var last = parsed.pathname.split("/").pop() || parsed.hostname;
      var type = (last.split(".").pop() || "").toUpperCase();
      if (/^\/api\/v1\/files\//.test(parsed.pathname)) return "Your upload · " + type;
      if (/^\/files\/generated\//.test(parsed.pathname)) return "Run output · " + type;
      return parsed.hostname + "/…/" + last;
    } catch (error) {
      return url;
    }
  }

  function button(label, text, attribute, value, disabled) {
    var element = document.createElement("button");
    element.type = "button";
    element.className = "btn btn-ghost btn-small upload-action";
    element.setAttribute("aria-label", label);
    element.setAttribute(attribute, value);
    element.textContent = text;
    element.disabled = disabled;
    return element;
  }

  function item(url, index, count) {
    var number = index + 1;
    var li = document.createElement("li");
    li.className = "upload-item";
    li.setAttribute("data-upload-item", "");
    li.setAttribute("data-url", url);
    var frame = document.createElement("span");
    frame.className = "upload-thumb";
    if (sameOrigin(url)) {
      // Only this server's files: other sites' images are not loaded into the page (CSP).
      var img = document.createElement("img");
      img.src = url;
      img.alt = "Reference image " + number;
      img.loading = "lazy";
      img.addEventListener("error", function () { frame.classList.add("is-broken"); });
      frame.appendChild(img);
    } else {
      frame.classList.add("is-remote");
      frame.textContent = "URL";
    }
    var name = document.createElement("span");
    name.className = "upload-name small";
    name.textContent = number + ". " + shortName(url);
    name.title = url;
    var actions = document.createElement("span");
    actions.className = "upload-actions";
    actions.appendChild(button("Move reference image " + number + " earlier", "↑",
                               "data-upload-move", "-1", index === 0));
    actions.appendChild(button("Move reference image " + number + " later", "↓",
                               "data-upload-move", "1", index === count - 1));
    actions.appendChild(button("Remove reference image " + number, "✕",
                               "data-upload-remove", "", false));
    li.appendChild(frame);
    li.appendChild(name);
    li.appendChild(actions);
    return li;
  }

  function pendingItem(file) {
    var li = document.createElement("li");
    li.className = "upload-item is-uploading";
    li.setAttribute("data-upload-pending", "");
    var frame = document.createElement("span");
    frame.className = "upload-thumb";
    var spinner = document.createElement("span");
    spinner.className = "spinner";
    spinner.setAttribute("aria-hidden", "true");
    frame.appendChild(spinner);
    var name = document.createElement("span");
    name.className = "upload-name small";
    name.textContent = "Uploading " + file.name + "…";
    li.appendChild(frame);
    li.appendChild(name);
    return li;
  }

  function render(zone) {
    var list = zone.querySelector("[data-upload-list]");
    var current = urls(zone);
    var pending = list.querySelectorAll("[data-upload-pending]");
    list.textContent = "";
    current.forEach(function (url, index) { list.appendChild(item(url, index, current.length)); });
    Array.prototype.forEach.call(pending, function (li) { list.appendChild(li); });
    var max = maxItems(zone);
    var count = zone.querySelector("[data-upload-count]");
    count.textContent = max === Infinity ? "" : " · " + current.length + " of " + max;
    zone.classList.toggle("is-full", current.length >= max);
  }

  // --- uploading ----------------------------------------------------------------------------

  function upload(zone, file) {
    var list = zone.querySelector("[data-upload-list]");
    var placeholder = pendingItem(file);
    list.appendChild(placeholder);
    zone.classList.add("is-uploading");
    var body = new FormData();
    body.append("file", file, file.name);
    return fetch(zone.getAttribute("data-upload-url"), {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" }
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (answer) {
        if (!response.ok || !answer || !answer.url) {
          var message = answer && answer.error && answer.error.message;
          if (response.status === 413 && !message) message = "The file is too large.";
          throw new Error(message || "The upload failed (HTTP " + response.status + ").");
        }
        return answer;
      });
    }).then(function (answer) {
      placeholder.remove();
      var current = urls(zone);
      current.push(answer.url);
      setUrls(zone, current);
      announce(zone, "Uploaded " + file.name + ".");
    }, function (error) {
      placeholder.remove();
      var message = error && error.message && !/fetch|network/i.test(error.name + error.message)
        ? error.message : "The upload failed: the server could not be reached.";
      showError(zone, file.name + ": " + message);
      render(zone);
    }).then(function () {
      if (!zone.querySelector("[data-upload-pending]")) zone.classList.remove("is-uploading");
    });
  }

  function addFiles(zone, files) {
    files = Array.prototype.filter.call(files || [], function (file) { return file && file.size >= 0; });
    if (!files.length) return;
    clearError(zone);
    var max = maxItems(zone);
    var busy = zone.querySelectorAll("[data-upload-pending]").length;
    var room = max - urls(zone).length - busy;
    var limit = parseInt(zone.getAttribute("data-max-bytes"), 10);
    var problems = [];
    if (files.length > room) {
      var left = files.length - Math.max(room, 0);
      problems.push("This model takes at most " + max + " reference image" + (max === 1 ? "" : "s") +
                    ": " + left + " file" + (left === 1 ? " was" : "s were") + " not added.");
      files = files.slice(0, Math.max(room, 0));
    }
    files.forEach(function (file) {
      if (limit && file.size > limit) {
        problems.push(file.name + " is larger than " + Math.round(limit / MEGABYTE) + " MB.");
      } else {
        upload(zone, file);
      }
    });
    if (problems.length) showError(zone, problems.join(" "));
  }

  // --- remove and reorder -------------------------------------------------------------------

  function onAction(zone, target) {
    var li = target.closest("[data-upload-item]");
    var items = Array.prototype.slice.call(zone.querySelectorAll("[data-upload-item]"));
    var index = items.indexOf(li);
    var current = urls(zone);
    if (index < 0 || index >= current.length) return;
    clearError(zone);
    if (target.hasAttribute("data-upload-remove")) {
      current.splice(index, 1);
      setUrls(zone, current);
      announce(zone, "Removed reference image " + (index + 1) + ".");
      // Focus stays in the list: the image now in that place, else the one before, else
      // the picker.
      var next = zone.querySelectorAll("[data-upload-remove]")[Math.min(index, current.length - 1)];
      (next || zone.querySelector("[data-upload-input]")).focus();
      return;
    }
    var step = parseInt(target.getAttribute("data-upload-move"), 10);
    var to = index + step;
    if (to < 0 || to >= current.length) return;
    var moved = current.splice(index, 1)[0];
    current.splice(to, 0, moved);
    setUrls(zone, current);
    announce(zone, "Reference image " + (index + 1) + " is now number " + (to + 1) + ".");
    // Keep focus on the same button of the moved image, unless it can't move further.
    var buttons = zone.querySelectorAll("[data-upload-item]")[to]
      .querySelectorAll("[data-upload-move]");
    var same = buttons[step < 0 ? 0 : 1];
    (same.disabled ? buttons[step < 0 ? 1 : 0] : same).focus();
  }

  // --- wiring -------------------------------------------------------------------------------

  function init(root) {
    Array.prototype.forEach.call((root || document).querySelectorAll("[data-uploads]"), function (zone) {
      if (zone.hasAttribute("data-upload-ready")) return;
      zone.setAttribute("data-upload-ready", "");
      zone.hidden = false;
      render(zone);
    });
  }

  function zoneOf(event) {
    return event.target.closest && event.target.closest("[data-uploads]");
  }

  function hasFiles(event) {
    return event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") !== -1;
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  // The run form is swapped in when another model is picked.
  document.addEventListener("htmx:load", function (event) { init(event.target); });

  document.addEventListener("input", function (event) {
    var zone = Array.prototype.find.call(zones(), function (candidate) {
      return textareaOf(candidate) === event.target;
    });
    if (zone) render(zone);
  });

  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-upload-input]")) return;
    addFiles(event.target.closest("[data-uploads]"), event.target.files);
    event.target.value = "";
  });

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-upload-move], [data-upload-remove]");
    if (target) onAction(target.closest("[data-uploads]"), target);
  });

  // Drops on the zone are ours: stopped in the capture phase, before the Playground's own
  // drop handler (which restores a recipe from a PNG dropped anywhere else in the column).
  ["dragenter", "dragover"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var zone = zoneOf(event);
      if (!zone || !hasFiles(event)) return;
      event.preventDefault();
      event.stopPropagation();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("is-dragging");
    }, true);
  });

  document.addEventListener("dragleave", function (event) {
    var zone = zoneOf(event);
    if (zone && !zone.contains(event.relatedTarget)) zone.classList.remove("is-dragging");
  }, true);

  document.addEventListener("drop", function (event) {
    var zone = zoneOf(event);
    if (!zone || !hasFiles(event)) return;
    event.preventDefault();
    event.stopPropagation();
    zone.classList.remove("is-dragging");
    addFiles(zone, event.dataTransfer.files);
  }, true);

  // Pasted images go to the form's image list, wherever the focus is on the page.
  document.addEventListener("paste", function (event) {
    var data = event.clipboardData;
    if (!data || !data.files || !data.files.length) return;
    var images = Array.prototype.filter.call(data.files, function (file) {
      return /^image\//.test(file.type);
    });
    var zone = document.querySelector("#run-form [data-uploads]");
    if (!images.length || !zone) return;
    event.preventDefault();
    addFiles(zone, images);
  });
})();
