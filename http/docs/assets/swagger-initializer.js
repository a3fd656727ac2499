// Starts Swagger UI on the service's own OpenAPI document. The URL is
// relative to the page, so the docs also work behind a path prefix;
// validatorUrl: null keeps Swagger UI from calling its online validator, so
// nothing is fetched from outside this service.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
