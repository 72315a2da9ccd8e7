// Copy buttons: <button data-copy="element-id">. No inline script anywhere (CSP).
function latchkeyCopied(button) {
  var label = button.getAttribute("data-label") || button.textContent;
  button.setAttribute("data-label", label);
  button.textContent = "Copied";
  setTimeout(function () { button.textContent = label; }, 2000);
}

function latchkeyCopyFallback(source, button) {
  var range = document.createRange();
  range.selectNodeContents(source);
  var selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  var ok = false;
  try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
  if (ok) { latchkeyCopied(button); } else { button.textContent = "Press Ctrl+C"; }
}

document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  var text = source.textContent.trim();
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { latchkeyCopied(button); },
      function () { latchkeyCopyFallback(source, button); });
  } else {
    latchkeyCopyFallback(source, button);
  }
});

// Pages work without JavaScript; this file only improves them.
document.documentElement.classList.add("js");

// The navigation on narrow screens: a Menu button opens and closes it.
function latchkeyNav() {
  var toggle = document.querySelector(".nav-toggle");
  if (!toggle) return;
  toggle.hidden = false;
}
document.addEventListener("DOMContentLoaded", latchkeyNav);
document.addEventListener("htmx:load", latchkeyNav);
document.addEventListener("click", function (event) {
  if (event.target.closest("#sidebar-menu a")) {
    // Navigating: fold the menu so the next page starts folded.
    document.getElementById("sidebar").classList.remove("open");
  }
  var toggle = event.target.closest(".nav-toggle");
  if (!toggle) return;
  var sidebar = document.getElementById("sidebar");
  var open = !sidebar.classList.contains("open");
  sidebar.classList.toggle("open", open);
  toggle.setAttribute("aria-expanded", open ? "true" : "false");
});

// Confirmations (web/confirm.rs): htmx loads the <dialog> into #dialog-slot;
// it opens as a modal, Cancel and Escape close it, and focus goes back to
// the button that opened it (or to the changed row after an in-place action).
var latchkeyOpener = null;
document.addEventListener("click", function (event) {
  var opener = event.target.closest("[data-opens-dialog]");
  if (opener) {
    latchkeyOpener = opener;
    var menu = opener.closest("details.menu");
    if (menu) menu.removeAttribute("open");
  }
  var close = event.target.closest("[data-close-dialog]");
  if (close) {
    var dialog = close.closest("dialog");
    if (dialog) dialog.close();
  }
});
document.addEventListener("htmx:afterSwap", function (event) {
  if (event.detail.target && event.detail.target.id === "dialog-slot") {
    var dialog = event.detail.target.querySelector("dialog");
    if (!dialog) return;
    dialog.addEventListener("close", function () {
      var back = latchkeyOpener;
      dialog.remove();
      if (!back || !document.body.contains(back)) return;
      // A button inside a closed action menu cannot take focus: its menu can.
      var menu = back.closest("details.menu");
      if (menu && !menu.open) back = menu.querySelector("summary") || back;
      back.focus();
    });
    dialog.showModal();
    var first = dialog.querySelector("select, textarea, input:not([type=hidden])") || dialog.querySelector("[data-confirm-submit]");
    if (first) first.focus();
  }
});
// An in-place action from a dialog: close it before the swap, then put focus
// on what changed (the form's data-focus selector).
document.addEventListener("htmx:beforeSwap", function (event) {
  var form = event.detail.requestConfig && event.detail.requestConfig.elt;
  if (!form || !form.closest) return;
  var dialog = form.closest("dialog");
  if (dialog && event.detail.xhr.status < 400) {
    latchkeyOpener = null;
    var focus = form.getAttribute("data-focus");
    dialog.close();
    if (focus) {
      document.addEventListener("htmx:afterSettle", function once() {
        document.removeEventListener("htmx:afterSettle", once);
        var target = document.querySelector(focus);
        if (target) {
          if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
          target.focus();
        }
      });
    }
  }
});
// Close an open action menu on Escape or a click elsewhere.
document.addEventListener("keydown", function (event) {
  if (event.key !== "Escape") return;
  document.querySelectorAll("details.menu[open]").forEach(function (m) {
    m.removeAttribute("open");
    var s = m.querySelector("summary");
    if (s) s.focus();
  });
});
document.addEventListener("click", function (event) {
  document.querySelectorAll("details.menu[open]").forEach(function (m) {
    if (!m.contains(event.target)) m.removeAttribute("open");
  });
});

// === API keys: the scope picker (the server decides too: web/api_keys/form.rs) ===
// Choosing a preset ticks its boxes; ticking a box that departs from the
// preset switches to Custom; the summary (aria-live) says what the key gets.
function latchkeyScopeBoxes(picker) {
  return Array.prototype.slice.call(picker.querySelectorAll("input[type=checkbox][name=scopes]"));
}
function latchkeyPresetMatches(picker, preset) {
  var attr = preset === "read_only" ? "data-read-only" : "data-full";
  return latchkeyScopeBoxes(picker).every(function (box) { return box.checked === box.hasAttribute(attr); });
}
function latchkeyScopeSummary(picker) {
  var summary = picker.querySelector("#scope-summary");
  if (!summary) return;
  var chosen = latchkeyScopeBoxes(picker).filter(function (b) { return b.checked; });
  summary.textContent = "";
  var p = document.createElement("p");
  if (chosen.length === 0) {
    p.textContent = "Tick at least one permission, or choose a preset.";
    summary.appendChild(p);
    return;
  }
  p.textContent = "This key will be able to:";
  summary.appendChild(p);
  var list = document.createElement("ul");
  chosen.forEach(function (b) {
    var li = document.createElement("li");
    li.textContent = b.getAttribute("data-describe") || b.value;
    list.appendChild(li);
  });
  summary.appendChild(list);
}
document.addEventListener("change", function (event) {
  var input = event.target;
  var picker = input.closest && input.closest("#scope-picker");
  if (!picker) return;
  if (input.name === "preset") {
    if (input.value === "read_only" || input.value === "full") {
      var attr = input.value === "read_only" ? "data-read-only" : "data-full";
      latchkeyScopeBoxes(picker).forEach(function (box) { box.checked = box.hasAttribute(attr); });
    }
  } else if (input.name === "scopes") {
    var current = picker.querySelector("input[name=preset]:checked");
    if (current && current.value !== "custom" && !latchkeyPresetMatches(picker, current.value)) {
      var custom = picker.querySelector("input[name=preset][value=custom]");
      if (custom) custom.checked = true;
    }
  } else {
    return;
  }
  latchkeyScopeSummary(picker);
});
