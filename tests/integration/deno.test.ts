/**
 * The CLI under Deno, as a user would run it from a checkout: `deno run -A src/main.ts …` as a
 * real process, from a temp dir, with MOZART_HOME inside it. Deno is a pinned devDependency, so
 * a missing binary is a broken install and fails here instead of skipping silently.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { MAIN, ROOT, tempDir, testEnv, type CliResult } from "../helpers.ts";

const DENO = join(ROOT, "node_modules", ".bin", "deno");
const tmp = tempDir("mozart-deno-");

function requireDeno(): void {
  if (!existsSync(DENO)) throw new Error(`Deno is not installed at ${DENO}: run \`npm install\` (deno is a devDependency)`);
  // Without deno's postinstall, .bin/deno is npm's node shim, which does not pass signals on to Deno.
  if (realpathSync(DENO).endsWith(".cjs")) throw new Error(`${DENO} is deno's node shim: run \`node node_modules/deno/install.cjs\``);
}

/** Every scenario gets its own folder and MOZART_HOME, so job names never collide in the registry. */
function envFor(dir: string): Record<string, string> {
  return testEnv({ MOZART_HOME: join(dir, "home"), NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" });
}

function deno(dir: string, args: string[]): CliResult {
  requireDeno();
  const r = spawnSync(DENO, ["run", "-A", MAIN, ...args], { cwd: dir, env: envFor(dir), encoding: "utf8" });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A copy of the offline quickstart (job file plus its scripts) in its own folder, edited by `edit`. */
function quickstart(name: string, edit: (yaml: string) => string): string {
  const dir = join(tmp.path, name);
  cpSync(join(ROOT, "examples", "scripts"), join(dir, "scripts"), { recursive: true });
  writeFileSync(join(dir, "quickstart.yaml"), edit(readFileSync(join(ROOT, "examples", "quickstart.yaml"), "utf8")));
  return dir;
}

const withState = (kind: string) => (yaml: string) => `${yaml}\nstate_backend: ${kind}\n`;

function statusOf(dir: string): { status: string; progress: { completed: number; total: number } } {
  const r = deno(dir, ["status", "quickstart", "--json"]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

beforeAll(() => {
  // Deno's first start transpiles and caches every module; keep that out of the timed tests.
  expect(deno(tmp.path, ["validate", join(ROOT, "examples", "quickstart.yaml")]).code).toBe(0);
});
afterAll(() => tmp.cleanup());

describe("mozart under Deno", () => {
  test("--version", () => {
    const r = deno(tmp.path, ["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`mozart ${pkg.version}`);
  });

  test("validate: the quickstart is valid; a broken file is exit 2 with file:line:col", () => {
    const dir = quickstart("validate", (y) => y.replace("total_items: 25", "totl_items: 25"));
    expect(deno(dir, ["validate", join(ROOT, "examples", "quickstart.yaml")]).code).toBe(0);
    const r = deno(dir, ["validate", "quickstart.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/quickstart\.yaml:\d+:\d+ batch\.totl_items: unknown key/);
  });

  for (const kind of ["sqlite", "json"]) {
    test(`the offline quickstart runs to completion with ${kind} state`, () => {
      const dir = quickstart(kind, withState(kind));
      const r = deno(dir, ["run", "quickstart.yaml"]);
      expect(r.stderr).not.toContain("error:");
      expect(r.code).toBe(0);
      const s = statusOf(dir);
      expect(s.status).toBe("completed");
      expect(s.progress).toMatchObject({ completed: 3, total: 3 });
      expect(existsSync(join(dir, "workspace", ".mozart", kind === "sqlite" ? "state.db" : "jobs"))).toBe(true);
      const list = JSON.parse(deno(dir, ["list", "--json"]).stdout);
      expect(list.jobs[0]).toMatchObject({ job_id: "quickstart", status: "completed" });
    });
  }

  test("SIGINT during a slow batch → exit 130, paused; resume completes the job", async () => {
    const dir = quickstart("sigint", (y) => y.replace('command: "sh ', 'command: "sleep 1; sh '));
    requireDeno();
    const child = spawn(DENO, ["run", "-A", MAIN, "run", "quickstart.yaml"], { cwd: dir, env: envFor(dir), stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((res) => child.on("close", (code) => res(code)));
    // The handlers are installed before the first batch starts; a SIGINT earlier would just kill Deno.
    for (let i = 0; i < 200 && !stderr.includes("batch 1/3 started"); i++) await Bun.sleep(50);
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(statusOf(dir).status).toBe("paused");

    const r = deno(dir, ["resume", "quickstart"]);
    expect(r.code).toBe(0);
    expect(statusOf(dir)).toMatchObject({ status: "completed", progress: { completed: 3, total: 3 } });
  });

  // Deno, like Node, throws on a write to a closed pipe, where Bun only sets the exit code.
  for (const closed of ["stdout", "stderr"] as const) {
    test(`a closed ${closed} (a reader or terminal gone) neither crashes nor stops a run`, async () => {
      const dir = quickstart(`closed-${closed}`, (y) => y);
      requireDeno();
      const child = spawn(DENO, ["run", "-A", MAIN, "run", "quickstart.yaml", "-v"], { cwd: dir, env: envFor(dir), stdio: ["ignore", "pipe", "pipe"] });
      let other = "";
      (closed === "stdout" ? child.stderr : child.stdout).on("data", (d) => (other += d));
      (closed === "stdout" ? child.stdout : child.stderr).destroy();
      const code = await new Promise<number | null>((res) => child.on("close", (c) => res(c)));
      expect(code).toBe(0);
      if (closed === "stderr") expect(other).toContain("completed: 3/3 batches");
      else expect(other).not.toContain("EPIPE");
      expect(statusOf(dir).status).toBe("completed");
    });
  }
});
