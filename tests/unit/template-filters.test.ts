/**
 * Template filters belong to our templates, not to squirrelly's process-wide registry: loading the
 * template module (once, or twice as two bundled copies would) must leave other users' filters alone.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as Sqrl from "squirrelly";

type RenderModule = typeof import("../../src/prompts/render.ts");
let copies = 0;
/** A fresh evaluation of render.ts, as a second bundled copy would be. */
const freshCopy = (): Promise<RenderModule> => import(`../../src/prompts/render.ts?copy=${++copies}`);

const registry = (Sqrl.filters as unknown as { cache: Record<string, unknown> }).cache;
const snapshot = { ...registry };
afterEach(() => {
  for (const k of Object.keys(registry)) if (!(k in snapshot)) delete registry[k];
  Object.assign(registry, snapshot);
});

describe("template filters", () => {
  test("loading the template module adds nothing to squirrelly's shared registry", async () => {
    const before = Object.keys(registry).sort();
    await freshCopy();
    await freshCopy();
    expect(Object.keys(registry).sort()).toEqual(before);
  });

  test("a filter someone else registered under one of our names is never replaced, and our prompts keep ours", async () => {
    const theirs = (v: unknown) => `theirs:${String(v)}`;
    Sqrl.filters.define("upper", theirs);
    const render = await freshCopy();
    expect(Sqrl.filters.get("upper")).toBe(theirs);
    expect(Sqrl.render("{{it.x | upper}}", { x: "a" })).toBe("theirs:a");
    expect(render.compileTemplate("{{ x | upper }}").render({ x: "a" }, "batch 1")).toBe("A");
  });

  test("two copies of the module in one process both render every filter", async () => {
    const [a, b] = [await freshCopy(), await freshCopy()];
    expect(a).not.toBe(b);
    const src = "{{ name | upper }} {{ name | title }} {{ xs | join('-') }} {{ xs | length }} {{ xs | first }} {{ '' | default('none') }} {{ ' n ' | trim }} {{ '7x' | int }}";
    const want = "AB CD Ab Cd 1-2 2 1 none n 7";
    for (const m of [a, b]) expect(m.compileTemplate(src).render({ name: "ab cd", xs: [1, 2] }, "batch 1")).toBe(want);
  });
});
