/**
 * The hostile suite's state damage on the sqlite backend: a state file (or all of it) deleted,
 * truncated or replaced by garbage between runs and during them, at seeded random moments.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { stateChaos } from "./state-chaos.ts";

describe("state damaged between and during runs (sqlite)", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("10 rounds: no crash, never a false completed, always recoverable", async () => {
    box = sandbox("sqlite");
    const r = await stateChaos(box, "sqlite", 3100, 10);
    expect(r.between).toBeGreaterThanOrEqual(4);
    expect(r.during).toBeGreaterThanOrEqual(4);
  }, 120_000);
});
