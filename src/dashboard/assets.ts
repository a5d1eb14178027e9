/**
 * Everything the dashboard serves besides the API, embedded in the binary: the page, and Swagger
 * UI for /docs (no CDN, so it works offline). Text imports work the same in Bun, in
 * `bun build --compile` binaries and in Deno alike.
 */
import swaggerCss from "swagger-ui-dist/swagger-ui.css" with { type: "text" };
import swaggerJs from "swagger-ui-dist/swagger-ui-bundle.js" with { type: "text" };
import pageCss from "./page/app.css" with { type: "text" };
import pageJs from "./page/app.js" with { type: "text" };
import pageHtml from "./page/index.html" with { type: "text" };

export interface Asset {
  type: string;
  body: string;
  csp?: "docs";
}

const DOCS_HTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Mozart dashboard API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div><script src="/docs/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script></body>
</html>
`;

const DOCS_INIT = `window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, tryItOutEnabled: false });\n`;

export const ASSETS: ReadonlyMap<string, Asset> = new Map<string, Asset>([
  ["/", { type: "text/html; charset=utf-8", body: pageHtml as unknown as string }],
  ["/app.js", { type: "text/javascript; charset=utf-8", body: pageJs }],
  ["/app.css", { type: "text/css; charset=utf-8", body: pageCss }],
  ["/docs", { type: "text/html; charset=utf-8", body: DOCS_HTML, csp: "docs" }],
  ["/docs/swagger-ui.css", { type: "text/css; charset=utf-8", body: swaggerCss, csp: "docs" }],
  ["/docs/swagger-ui-bundle.js", { type: "text/javascript; charset=utf-8", body: swaggerJs, csp: "docs" }],
  ["/docs/init.js", { type: "text/javascript; charset=utf-8", body: DOCS_INIT, csp: "docs" }],
]);
