/** Facts that must live in exactly one module, so two copies can never drift apart; and no dead code hidden from the compiler. */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { ROOT } from "../helpers.ts";

const SRC = join(ROOT, "src");
const sources = (readdirSync(SRC, { recursive: true }) as string[])
  .filter((f) => f.endsWith(".ts"))
  .sort()
  .map((f) => ({ file: relative(ROOT, join(SRC, f)), text: readFileSync(join(SRC, f), "utf8") }));

describe("single sources", () => {
  test("package.json is read only by src/version.ts", () => {
    const readers = sources.filter((s) => /from\s+["'][^"']*package\.json["']/.test(s.text)).map((s) => s.file);
    expect(readers).toEqual(["src/version.ts"]);
  });

  test('"did you mean" reads the published JSON Schema, never zod\'s private internals', () => {
    const readers = sources.filter((s) => s.text.includes("_zod")).map((s) => s.file);
    expect(readers).toEqual([]);
  });

  test("one sleep, one duration formatter, one clip, one errno", () => {
    const declaring = (name: string) => sources.filter((s) => new RegExp(`(?:function|const|let)\\s+${name}\\b`).test(s.text)).map((s) => s.file);
    expect(declaring("sleep")).toEqual(["src/time.ts"]);
    expect(declaring("formatDuration")).toEqual(["src/time.ts"]);
    expect(declaring("clip")).toEqual(["src/text.ts"]);
    expect(declaring("errno")).toEqual(["src/errors.ts"]);
  });

  test("nothing outside src/runtime/ touches Bun or Deno APIs", () => {
    const hits = sources.filter((s) => !s.file.startsWith("src/runtime/") && /\bBun\.|from\s+["']bun:|\bDeno\./.test(s.text)).map((s) => s.file);
    expect(hits).toEqual([]);
  });

  test("ExpandedRule is declared once, next to the prepared job that makes it", () => {
    const declared = sources.filter((s) => /\b(type|interface)\s+ExpandedRule\b/.test(s.text)).map((s) => s.file);
    expect(declared).toEqual(["src/config/check.ts"]);
  });
});

describe("dead code", () => {
  const dirs = ["src/"];

  test("no variable is kept alive with `void name;` to silence the compiler", () => {
    const hits = sources.filter((s) => dirs.some((d) => s.file.startsWith(d))).flatMap((s) => (/^\s*void [A-Za-z_$][\w$]*;\s*$/m.test(s.text) ? [s.file] : []));
    expect(hits).toEqual([]);
  });

  test("the source has no unused locals or parameters", () => {
    const tsc = join(ROOT, "node_modules", ".bin", "tsc");
    const r = spawnSync(tsc, ["--noEmit", "-p", ROOT, "--noUnusedLocals", "--noUnusedParameters"], { cwd: ROOT, encoding: "utf8" });
    const lines = `${r.stdout}${r.stderr}`.split("\n").filter((l) => dirs.some((d) => l.startsWith(d)));
    expect(lines).toEqual([]);
  }, 60_000);
});
