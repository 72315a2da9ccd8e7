// Starts Swagger UI on /docs/api over this server's OpenAPI document.
// Its own file: the site's CSP allows no inline script.
window.addEventListener("DOMContentLoaded", function () {
  var target = document.getElementById("swagger-ui");
  if (!target || !window.SwaggerUIBundle) return;
  window.SwaggerUIBundle({
    url: target.getAttribute("data-document"),
    domNode: target,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: false,
    // No call to an outside validator (and none is allowed by the CSP).
    validatorUrl: null,
    defaultModelsExpandDepth: 0,
    docExpansion: "list",
    tryItOutEnabled: false,
    withCredentials: false,
  });
  // Swagger UI leaves its server picker without a label: give it one.
  new MutationObserver(function () {
    var servers = document.getElementById("servers");
    if (servers && !servers.hasAttribute("aria-label")) servers.setAttribute("aria-label", "Server");
  }).observe(target, { childList: true, subtree: true });
});
