/**
 * Readers that go away: `mozart ... | head -1`, a closed terminal. A closed stdout or stderr
 * never crashes Mozart, never prints a stack trace, and never stops a run's work.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { MAIN, mozart, tempDir, testEnv, type CliResult } from "../helpers.ts";

let dir: ReturnType<typeof tempDir>;
let env: Record<string, string>;
beforeEach(() => {
  dir = tempDir();
  env = { MOZART_HOME: join(dir.path, "home") };
});
afterEach(() => dir.cleanup());

/** A job that takes a moment per batch, so its output arrives over time. */
function job(name = "pipes", batches = 4): string {
  const file = join(dir.path, `${name}.yaml`);
  writeFileSync(
    file,
    `name: ${name}\nbatch: {size: 1, total_items: ${batches}}\nprompt: {template: "batch {{ batch_num }}"}\n` +
      `backend: {type: command, command: "sleep 0.2; echo done with this batch"}\npause_between_batches_seconds: 0\n`,
  );
  return file;
}

/**
 * Run mozart with one of its output pipes closed by the reader: at once, or after the first
 * line has arrived. Collects the other stream and the exit code.
 */
function withClosedReader(args: string[], close: "stdout" | "stderr", when: "at-once" | "after-first-line"): Promise<CliResult> {
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: dir.path, env: testEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const closing = close === "stdout" ? child.stdout : child.stderr;
  const other = close === "stdout" ? child.stderr : child.stdout;
  other.on("data", (d) => (close === "stdout" ? (stderr += d) : (stdout += d)));
  if (when === "at-once") closing.destroy();
  else {
    let seen = "";
    closing.on("data", (d) => {
      seen += d;
      if (seen.includes("\n")) closing.destroy();
    });
  }
  return new Promise((res) => child.on("close", (code, signal) => res({ code: code ?? (signal ? 128 : -1), stdout, stderr })));
}

const noCrash = (stderr: string) => {
  expect(stderr).not.toContain("EPIPE");
  expect(stderr).not.toContain("EIO");
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toContain("unexpected error");
};

describe("a closed stdout ends quietly", () => {
  test("mozart run job.yaml | head -1, as a real shell pipeline", () => {
    const file = job();
    const r = spawnSync("bash", ["-o", "pipefail", "-c", `"${process.execPath}" "${MAIN}" run "${file}" | head -1; echo "exit $?" >&2`], { cwd: dir.path, env: testEnv(env), encoding: "utf8" });
    noCrash(r.stderr);
    expect(r.stdout).toContain("completed: 4/4 batches");
    expect(r.stderr).toContain("exit 0");
  });

  test("a big --json document cut after its first line: no stack trace, no error text, exit 0", async () => {
    const big = join(dir.path, "big.yaml");
    writeFileSync(big, 'name: big\nbatch: {size: 1, total_items: 3000}\nprompt: {template: "Process batch {{ batch_num }} of {{ total_batches }} with a long enough prompt."}\nbackend: {type: command, command: "true"}\n');
    const r = await withClosedReader(["run", big, "-n", "--json"], "stdout", "after-first-line");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  test("a run whose reader is gone still finishes its job and exits with its own code", async () => {
    const file = job();
    const r = await withClosedReader(["run", file], "stdout", "at-once");
    noCrash(r.stderr);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("batch 4/4 completed");
    const status = JSON.parse(mozart(["status", "pipes", "--json"], { cwd: dir.path, env }).stdout);
    expect(status.status ?? status.job?.status).toBe("completed");
  });

  test("status into a closed pipe", async () => {
    const file = job("small", 1);
    expect(mozart(["run", file], { cwd: dir.path, env }).code).toBe(0);
    const r = await withClosedReader(["status", "small"], "stdout", "at-once");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });
});

describe("a closed stderr (a terminal that is gone) never crashes the process", () => {
  test("a verbose run with stderr closed at once completes and prints its summary", async () => {
    const file = job();
    const r = await withClosedReader(["run", file, "-v"], "stderr", "at-once");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("completed: 4/4 batches");
  });

  test("stderr closed after the first progress line", async () => {
    const file = job();
    const r = await withClosedReader(["run", file, "-v"], "stderr", "after-first-line");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("completed: 4/4 batches");
  });

  test("an error message to a closed stderr still exits with its code", async () => {
    const r = await withClosedReader(["status", "no-such-job"], "stderr", "at-once");
    expect(r.code).toBe(1);
  });
});
