// The output component's behaviour (templates/macros/outputs.html), on every page that
// shows outputs: a lightbox that opens an output full size in a modal <dialog>, steps
// through the other outputs of the same run (buttons, ← and →) and closes with Escape,
// giving focus back to what opened it; and the Loop toggle of videos. Delegated
// listeners only: the CSP forbids inline handlers, and htmx keeps replacing the cards.
(function () {
  "use strict";

  var lightbox = null;
  var group = [];
  var shown = 0;
  var opener = null;

  function button(className, label, text) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = className;
    b.setAttribute("aria-label", label);
    b.textContent = text;
    return b;
  }

  function build() {
    var dialog = document.createElement("dialog");
    dialog.className = "lightbox";
    dialog.setAttribute("aria-label", "Output, full size");
    var stage = document.createElement("div");
    stage.className = "lightbox-stage";
    var image = document.createElement("img");
    var video = document.createElement("video");
    video.controls = true;
    video.playsInline = true;
    video.muted = true;
    stage.append(image, video);
    var close = button("lightbox-close", "Close", "×");
    var prev = button("lightbox-step lightbox-prev", "Previous output", "‹");
    var next = button("lightbox-step lightbox-next", "Next output", "›");
    var count = document.createElement("p");
    count.className = "lightbox-count";
    count.setAttribute("aria-live", "polite");
    var download = document.createElement("a");
    download.className = "btn btn-small lightbox-download";
    download.textContent = "Download";
    dialog.append(close, prev, stage, next, count, download);
    dialog.addEventListener("click", function (event) {
      if (event.target === prev) step(-1);
      else if (event.target === next) step(1);
      else if (event.target === download) return;  // the browser saves the file
      // A click on the video is for its controls; anywhere else (picture, backdrop, ×) closes.
      else if (event.target !== video) dialog.close();
    });
    dialog.addEventListener("keydown", function (event) {
      // Arrow keys inside the video's own controls seek; elsewhere they step.
      if (event.target === video) return;
      if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
      if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
    });
    dialog.addEventListener("close", restoreFocus);
    document.body.append(dialog);
    return dialog;
  }

  function show(index) {
    shown = (index + group.length) % group.length;
    var link = group[shown];
    var isVideo = link.getAttribute("data-kind") === "video";
    var image = lightbox.querySelector("img");
    var video = lightbox.querySelector("video");
    video.pause();
    image.hidden = isVideo;
    video.hidden = !isVideo;
    if (isVideo) {
      image.removeAttribute("src");
      video.poster = link.getAttribute("data-poster") || "";
      video.src = link.getAttribute("href");
      video.setAttribute("aria-label", link.getAttribute("data-alt") || "Video output");
      // The toggle next to the video on the page decides whether it loops here too.
      var toggle = link.closest("[data-output]");
      toggle = toggle && toggle.querySelector("[data-loop-toggle]");
      video.loop = Boolean(toggle && toggle.getAttribute("aria-pressed") === "true");
    } else {
      video.removeAttribute("src");
      video.load();  // stops any download of the video that was shown before
      var thumb = link.querySelector("img");
      image.src = link.getAttribute("href");
      image.alt = thumb ? thumb.alt : "";
    }
    // The output's own Download link, repeated here for the one shown.
    var save = link.closest("[data-output]");
    save = save && save.querySelector("a[data-download]");
    var download = lightbox.querySelector(".lightbox-download");
    download.hidden = !save;
    if (save) {
      download.href = save.getAttribute("href");
      download.setAttribute("download", save.getAttribute("download") || "");
      download.setAttribute("aria-label", "Download this output");
    }
    var many = group.length > 1;
    lightbox.querySelectorAll(".lightbox-step").forEach(function (b) { b.hidden = !many; });
    var count = lightbox.querySelector(".lightbox-count");
    count.hidden = !many;
    count.textContent = (shown + 1) + " of " + group.length;
  }

  function step(delta) { if (group.length > 1) show(shown + delta); }

  function open(link) {
    lightbox = lightbox || build();
    opener = link;
    var set = link.closest("[data-output-group]");
    group = set ? Array.prototype.slice.call(set.querySelectorAll("a[data-lightbox]")) : [link];
    show(Math.max(0, group.indexOf(link)));
    lightbox.showModal();
    lightbox.querySelector(".lightbox-close").focus();
  }

  // Focus goes back to the link that opened the lightbox. A polling card may have been
  // swapped meanwhile (htmx); then to the same output's link in the new card.
  function restoreFocus() {
    var video = lightbox.querySelector("video");
    video.pause();
    var target = opener;
    if (target && !target.isConnected) {
      var href = target.getAttribute("href");
      target = Array.prototype.find.call(document.querySelectorAll("a[data-lightbox]"),
        function (link) { return link.getAttribute("href") === href; }) || null;
    }
    if (target) target.focus();
    opener = null;
  }

  function toggleLoop(toggle) {
    var figure = toggle.closest("[data-output]");
    var video = figure && figure.querySelector("video");
    if (!video) return;
    video.loop = !video.loop;
    toggle.setAttribute("aria-pressed", video.loop ? "true" : "false");
  }

  // A video ffmpeg could not make a still of (its poster answers 404): the tile shows
  // the video's own first frame instead of a broken image. Error events don't bubble,
  // hence the capturing listener.
  document.addEventListener("error", function (event) {
    var still = event.target;
    if (!still.matches || !still.matches("img[data-thumb-poster]")) return;
    var video = document.createElement("video");
    video.src = still.getAttribute("data-video-src");
    video.preload = "metadata";
    video.muted = true;
    video.playsInline = true;
    video.setAttribute("aria-label", still.alt);
    still.replaceWith(video);
  }, true);

  document.addEventListener("click", function (event) {
    var zoom = event.target.closest("a[data-lightbox]");
    // Ctrl/Cmd/Shift/middle click still opens the file in a new tab.
    if (zoom && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
      event.preventDefault();
      open(zoom);
      return;
    }
    var loop = event.target.closest("[data-loop-toggle]");
    if (loop) toggleLoop(loop);
  });
})();
