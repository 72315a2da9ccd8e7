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
});
