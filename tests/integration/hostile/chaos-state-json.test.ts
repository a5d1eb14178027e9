/**
 * The hostile suite's state damage on the json backend: a state file (or all of it) deleted,
 * truncated or replaced by garbage between runs and during them, at seeded random moments.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { stateChaos } from "./state-chaos.ts";

describe("state damaged between and during runs (json)", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("10 rounds: no crash, never a false completed, always recoverable", async () => {
    box = sandbox("json");
    const r = await stateChaos(box, "json", 3200, 10);
    expect(r.between).toBeGreaterThanOrEqual(4);
    expect(r.during).toBeGreaterThanOrEqual(4);
  }, 120_000);
});
