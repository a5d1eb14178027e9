/**
 * The hostile suite's signal matrix: INT, TERM, HUP and QUIT at every phase of a run — during an
 * attempt, during a validation, during a rate-limit hold, during the pause between batches — once
 * (drain: what runs finishes, the job pauses) and twice during an attempt (stop now). Every time:
 * exit 130, a paused job whose records hold together, nothing left running, and a resume that
 * completes it. The four signals of a phase run side by side, each in its own sandbox.
 */
import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { sandbox, type Kind, type Sandbox } from "../engine-helpers.ts";
import { KINDS, lineCount, processesWithEnv, statusOf, waitFor, type Doc } from "./hostile-helpers.ts";

setDefaultTimeout(90_000);

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const;
type Sig = (typeof SIGNALS)[number];
type Phase = "attempt" | "validation" | "hold" | "pause between batches";

interface Case {
  config: Record<string, unknown>;
  env?: Record<string, string>;
  /** Resolves once the run is in the phase. */
  inPhase(box: Sandbox, stderr: () => string): Promise<unknown>;
  /** What the records say after one signal. */
  after(doc: Doc): void;
  /** The longest a drained stop may take: a sanity bound (a hang), generous for a loaded 2-core machine. */
  stopMs: number;
  resume?: string[];
}

const CASES: Record<Phase, Case> = {
  attempt: {
    config: { backend: { type: "command", command: "echo $$ >> {job_dir}/pids; sleep 1", timeout_seconds: 60 } },
    inPhase: (box) => waitFor(() => lineCount(`${box.dir}/pids`) >= 1, "the attempt"),
    after: (doc) => expect(doc.batches.map((b) => b.status)).toEqual(["completed", "pending"]),
    stopMs: 25_000,
  },
  validation: {
    config: {
      backend: { type: "command", command: "true", timeout_seconds: 60 },
      validations: [{ type: "command_succeeds", command: "echo $$ >> {job_dir}/vpids; sleep 1", timeout_seconds: 60 }],
    },
    inPhase: (box) => waitFor(() => lineCount(`${box.dir}/vpids`) >= 1, "the validation"),
    after: (doc) => expect(doc.batches.map((b) => b.status)).toEqual(["completed", "pending"]),
    stopMs: 25_000,
  },
  hold: {
    config: { backend: { type: "claude_cli", timeout_seconds: 20 } },
    env: { FAKE_CLAUDE_SCENARIO: "usage-limit-epoch,ok", FAKE_CLAUDE_RESET_SECONDS: "120" },
    // The saved hold would make a plain resume wait two minutes; --force starts over without it.
    resume: ["--force"],
    inPhase: (_box, stderr) => waitFor(() => stderr().includes("holding all work until"), "the hold"),
    after: (doc) => {
      expect(doc.batches.map((b) => b.status)).toEqual(["pending", "pending"]);
      expect(doc.hold).not.toBeNull();
    },
    stopMs: 15_000,
  },
  "pause between batches": {
    config: { pause_between_batches_seconds: 60, backend: { type: "command", command: "true", timeout_seconds: 20 } },
    inPhase: (_box, stderr) => waitFor(() => stderr().includes("✓ batch 1/2 completed"), "batch 1"),
    after: (doc) => expect(doc.batches.map((b) => b.status)).toEqual(["completed", "pending"]),
    stopMs: 15_000,
  },
};

function checkPaused(box: Sandbox, sig: Sig): Doc {
  const { r, doc } = statusOf(box, "sig");
  expect(r.code).toBe(0);
  const d = doc!;
  expect(d.status).toBe("paused");
  expect(d.runners).toEqual([]);
  expect(d.batches.some((b) => b.status === "in_progress")).toBe(false);
  expect(processesWithEnv(box.dir)).toEqual([]);
  void sig;
  return d;
}

async function once(kind: Kind, phase: Phase, sig: Sig): Promise<void> {
  const c = CASES[phase];
  const box = sandbox(kind);
  try {
    const file = box.job({ name: "sig", batch: { size: 1, total_items: 2 }, ...c.config });
    const p = box.start(["run", file], c.env);
    await c.inPhase(box, () => p.output().stderr).catch((e: Error) => {
      throw new Error(`${e.message}; stderr so far: ${p.output().stderr}`);
    });
    p.child.kill(sig);
    const sent = Date.now();
    const r = await p.done;
    expect(Date.now() - sent).toBeLessThan(c.stopMs);
    expect(r.stderr).not.toContain("unexpected error");
    expect(r.stderr).toContain(`${sig === "SIGINT" ? "Ctrl+C" : sig}: starting no new work`);
    expect(r.code).toBe(130);
    c.after(checkPaused(box, sig));
    const resumed = box.run(["resume", "sig", ...(c.resume ?? [])], c.env);
    expect(resumed.code).toBe(0);
    const end = statusOf(box, "sig").doc!;
    expect(end.status).toBe("completed");
    expect(processesWithEnv(box.dir)).toEqual([]);
  } catch (e) {
    throw new Error(`${phase}, ${sig}: ${(e as Error).message}`);
  } finally {
    box.cleanup();
  }
}

async function twice(kind: Kind, sig: Sig): Promise<void> {
  const box = sandbox(kind);
  try {
    const file = box.job({ name: "sig", batch: { size: 1, total_items: 2 }, backend: { type: "command", command: "echo $$ >> {job_dir}/pids; exec sleep 30", timeout_seconds: 60 } });
    const p = box.start(["run", file]);
    await waitFor(() => lineCount(`${box.dir}/pids`) >= 1, "the attempt");
    p.child.kill(sig);
    await Bun.sleep(150);
    p.child.kill(sig);
    const sent = Date.now();
    const r = await p.done;
    expect(Date.now() - sent).toBeLessThan(15_000);
    expect(r.code).toBe(130);
    const doc = checkPaused(box, sig);
    expect(doc.batches.map((b) => b.status)).toEqual(["pending", "pending"]);
    const attempts = JSON.parse(box.run(["status", "sig", "--batch", "1", "--json"]).stdout) as { attempts: Array<{ decision: string }> };
    expect(attempts.attempts.map((a) => a.decision)).toEqual(["interrupted"]);
  } catch (e) {
    throw new Error(`twice, ${sig}: ${(e as Error).message}`);
  } finally {
    box.cleanup();
  }
}

for (const kind of KINDS) {
  describe(`every signal at every phase (${kind})`, () => {
    for (const phase of Object.keys(CASES) as Phase[]) {
      test(`one signal during the ${phase}: drained, paused, resumable`, async () => {
        await Promise.all(SIGNALS.map((sig) => once(kind, phase, sig)));
      });
    }
    test("a second signal during an attempt stops it at once, recorded as interrupted", async () => {
      await Promise.all(SIGNALS.map((sig) => twice(kind, sig)));
    });
  });
}
