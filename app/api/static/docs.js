// /docs: starts Swagger UI (the swagger-ui-bundle package's own files, no CDN) from a file, not
// an inline script, so the page keeps the dashboard's CSP. Every request it sends, the schema's
// included, carries the key the dashboard stored for this tab.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // no badge fetched from validator.swagger.io
    requestInterceptor: (request) => {
      const key = sessionStorage.getItem("tftsweep.apiKey");
      const given = Object.keys(request.headers || {}).map((h) => h.toLowerCase());
      if (key && !given.includes("x-api-key") && !given.includes("authorization")) {
        request.headers = Object.assign({}, request.headers, {"X-API-Key": key});
      }
      return request;
    },
  });
});
