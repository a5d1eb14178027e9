/**
 * `--json` on every error path of run, resume, status, logs, pause, cancel, list and repair — a
 * missing job, a bad flag, damaged state, a refused lease, a config error — prints exactly one
 * JSON document on stdout, whose exit_code (when it is an error) is the process's.
 */
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openStore } from "../../../src/state/store.ts";
import type { CliResult } from "../../helpers.ts";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { jsonJobFile, KINDS, sqliteFile, stateDir } from "./hostile-helpers.ts";

setDefaultTimeout(120_000);

const COMMANDS = ["run", "resume", "status", "logs", "pause", "cancel", "list", "repair"] as const;

function expectOneDocument(r: CliResult, what: string): { error?: { exit_code?: number; message?: string } | Array<unknown> } {
  let doc: unknown;
  try {
    doc = JSON.parse(r.stdout);
  } catch (e) {
    throw new Error(`${what}: stdout is not exactly one JSON document (exit ${r.code}): ${JSON.stringify(r.stdout.slice(0, 400))}; stderr: ${r.stderr.slice(0, 400)}`);
  }
  expect(typeof doc).toBe("object");
  const d = doc as { error?: { exit_code?: number } };
  if (d.error && !Array.isArray(d.error) && d.error.exit_code !== undefined) expect(d.error.exit_code).toBe(r.code);
  return d;
}

describe("--json: one document on every error path", () => {
  let box: Sandbox;
  beforeAll(() => {
    box = sandbox("sqlite");
  });
  afterAll(() => box?.cleanup());

  test("bad flags, for every command", () => {
    for (const cmd of COMMANDS) {
      const args = cmd === "list" ? [cmd, "--bogus", "--json"] : [cmd, cmd === "run" ? "job.yaml" : "x", "--bogus", "--json"];
      const r = box.run(args);
      expect(r.code).toBe(2);
      expectOneDocument(r, args.join(" "));
    }
    for (const args of [
      ["list", "--limit", "x", "--json"],
      ["list", "--status", "bogus", "--json"],
      ["logs", "x", "--since", "-1", "--json"],
      ["status", "x", "--batch", "abc", "--json"],
      ["resume", "x", "--from", "abc", "--json"],
      ["resume", "x", "--force", "--retry-failed", "--json"],
      ["run", "job.yaml", "--batch", "2", "--json"],
      ["status", "--json"],
      ["-j", "status", "x", "extra"],
    ]) {
      const r = box.run(args);
      expect(r.code).toBe(2);
      expectOneDocument(r, args.join(" "));
    }
  });

  test("a missing job, for every command that takes one", () => {
    for (const cmd of COMMANDS.filter((c) => c !== "list")) {
      const args = [cmd, cmd === "run" ? join(box.dir, "missing.yaml") : "no-such-job", "--json"];
      const r = box.run(args);
      expect(r.code).not.toBe(0);
      const d = expectOneDocument(r, args.join(" "));
      expect(d.error).toBeDefined();
    }
  });

  test("a config error: run, resume and repair of a broken job file", () => {
    const file = box.job({ name: "broken-later", batch: { size: 1, total_items: 1 }, backend: { type: "command", command: "true" } }, "broken.yaml");
    expect(box.run(["run", file]).code).toBe(0);
    writeFileSync(file, "name: broken-later\nbatch: { size: 0 }\nretyr: 1\n");
    for (const args of [["run", file, "--json"], ["resume", "broken-later", "--json"], ["repair", file, "--json"], ["run", file, "--dry-run", "--json"]]) {
      const r = box.run(args);
      expect(r.code).toBe(2);
      const d = expectOneDocument(r, args.join(" "));
      expect(d.error).toBeDefined();
    }
  });
});

for (const kind of KINDS) {
  describe(`--json with damaged state and refused leases (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    const made = (name: string) => {
      box = sandbox(kind);
      const file = box.job({ name, batch: { size: 1, total_items: 2 }, backend: { type: "command", command: "true", timeout_seconds: 20 } });
      expect(box.run(["run", file]).code).toBe(0);
      return file;
    };

    test("damaged state: every command", () => {
      const file = made("dmg");
      if (kind === "json") writeFileSync(jsonJobFile(box, "dmg"), '{"job_id": "dmg", "sta');
      else writeFileSync(sqliteFile(box), "this is not a database, it is garbage".repeat(200));
      for (const cmd of COMMANDS) {
        const args = cmd === "list" ? [cmd, "--json"] : [cmd, cmd === "run" ? file : "dmg", "--json"];
        const r = box.run(args);
        const d = expectOneDocument(r, args.join(" "));
        if (cmd === "list") {
          expect(r.code).toBe(0);
          continue;
        }
        // json: repair rebuilds the record; everything else refuses.
        if (cmd === "repair" && kind === "json") expect(r.code).toBe(0);
        else {
          expect(r.code).not.toBe(0);
          expect(d.error).toBeDefined();
        }
      }
    });

    test("a refused lease: run and resume", async () => {
      const file = made("held");
      const store = await openStore({ kind, location: kind === "json" ? stateDir(box) : sqliteFile(box) });
      const now = Date.now();
      await store.join("held", { id: "other", pid: 4242, host: "elsewhere.example", started_at: new Date(now).toISOString(), until: now + 120_000, renewed_at: now }, { now, ttlMs: 120_000, exclusive: true });
      await store.close();
      for (const args of [["run", file, "--json"], ["resume", "held", "--json"], ["resume", "held", "--force", "--json"]]) {
        const r = box.run(args);
        expect(r.code).toBe(1);
        const d = expectOneDocument(r, args.join(" ")) as { error: { message: string } };
        expect(d.error.message).toContain("already running");
      }
      // pause, cancel and status of the running job answer with one document too (logs --json
      // is JSON Lines, one event per line, by design).
      for (const cmd of ["pause", "cancel", "status"]) expectOneDocument(box.run([cmd, "held", "--json"]), cmd);
    });
  });
}
