/**
 * The hostile suite's crash test on the sqlite backend: kill -9 at 30 seeded random moments each of
 * `run`/`resume`, `resume --force` and `resume --from`; after every kill the records hold
 * together, and a final resume completes the job without re-running what stayed completed.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { killChaos, type KillMode } from "./kill-chaos.ts";

describe("kill -9 at random moments (sqlite)", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  for (const [i, mode] of (["run", "force", "from"] as KillMode[]).entries()) {
    test(`${mode === "run" ? "run / resume" : `resume --${mode}`}: 30 kills`, async () => {
      box = sandbox("sqlite");
      const r = await killChaos(box, mode, 30, 1000 + i);
      // Most kills must land mid-work, or the test proves little.
      expect(r.partial).toBeGreaterThanOrEqual(10);
    }, 90_000);
  }
});
