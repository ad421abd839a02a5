// Settings → Webhooks: show or hide the signing secret (<button data-reveal="input-id">).
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-reveal]");
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-reveal"));
    if (!field) return;
    var hidden = field.type === "password";
    field.type = hidden ? "text" : "password";
    button.textContent = hidden ? "Hide" : "Reveal";
    button.setAttribute("aria-pressed", hidden ? "true" : "false");
  });
})();
