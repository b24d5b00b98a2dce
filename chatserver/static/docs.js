// The API reference at /docs: Redoc (vendored, see vendor/README.md) rendering /openapi.json.
/* global Redoc */
Redoc.init("/openapi.json", {
  hideDownloadButton: false,
  expandResponses: "200,201",
  pathInMiddlePanel: true,
}, document.getElementById("reference"));
