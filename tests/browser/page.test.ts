/**
 * The dashboard page's files as shipped: small, self-contained (nothing fetched from elsewhere),
 * and written so the server's strict Content-Security-Policy never blocks a line of them.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ROOT } from "../helpers.ts";

const DIR = join(ROOT, "src", "dashboard", "page");
const FILES = ["index.html", "app.js", "app.css"] as const;
const read = (f: string) => readFileSync(join(DIR, f), "utf8");

describe("dashboard page files", () => {
  test("the three files are under 200 KB gzipped together", () => {
    const sizes = FILES.map((f) => gzipSync(readFileSync(join(DIR, f)), { level: 9 }).length);
    const total = sizes.reduce((a, b) => a + b, 0);
    console.log(`page gzipped: ${FILES.map((f, i) => `${f} ${sizes[i]} B`).join(", ")}; total ${total} B`);
    expect(total).toBeLessThan(200 * 1024);
  });

  test("nothing is loaded from another origin", () => {
    for (const f of FILES) {
      // The SVG namespace is a name, not a request.
      const urls = [...read(f).matchAll(/(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s"'`)]*/gi)].map((m) => m[0]).filter((u) => u !== "http://www.w3.org/2000/svg");
      expect({ file: f, urls }).toEqual({ file: f, urls: [] });
    }
    const css = read("app.css");
    expect([...css.matchAll(/@import[^;]*|url\(\s*["']?(?!data:)[^)]*\)/gi)].map((m) => m[0])).toEqual([]);
  });

  test("the HTML has no inline script, style or handler the CSP would block", () => {
    const html = read("index.html");
    expect([...html.matchAll(/<script\b[^>]*>/gi)].map((m) => m[0])).toEqual(['<script type="module" src="app.js"></script>'.replace("</script>", "")]);
    expect(html).not.toMatch(/<script\b[^>]*>[^<\s]/i);
    expect(html).not.toMatch(/<style\b/i);
    expect(html).not.toMatch(/\sstyle\s*=/i);
    expect(html).not.toMatch(/\son[a-z]+\s*=/i);
    expect(html).not.toMatch(/javascript:/i);
  });

  test("the script builds the DOM without HTML strings, eval or inline styles", () => {
    const js = read("app.js");
    expect(js).not.toMatch(/\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write/);
    expect(js).not.toMatch(/\beval\(|new Function\(|setTimeout\(\s*["'`]/);
    expect(js).not.toMatch(/setAttribute\(\s*["']style["']/);
    // Updates come from event streams, never from polling the API on a timer.
    expect(js).not.toMatch(/setInterval\([^)]*fetch|setInterval\([^)]*api\(/);
    expect(js).toContain("new EventSource(");
  });
});
