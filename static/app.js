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
