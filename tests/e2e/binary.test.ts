/**
 * The compiled host binary, as a user gets it: copied away from the checkout (no node_modules
 * anywhere above it), run from a temp folder with a bare environment. It is rebuilt first when
 * missing or older than the sources, so these tests never pass against a stale build.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { assetName, gitCommit, hostTarget } from "../../scripts/build.ts";
import { ROOT, tempDir, type CliResult } from "../helpers.ts";

const BUILT = join(ROOT, "dist", assetName(hostTarget()));

/** Newest modification time under src/ (and package.json, whose version is embedded). */
function newestSource(dir = join(ROOT, "src")): number {
  let newest = statSync(join(ROOT, "package.json")).mtimeMs;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

let shared: ReturnType<typeof tempDir>;
let binary = "";

beforeAll(() => {
  if (!existsSync(BUILT) || statSync(BUILT).mtimeMs < newestSource()) {
    const r = spawnSync(process.execPath, [join(ROOT, "scripts", "build.ts"), "--host"], { cwd: ROOT, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`building the host binary failed:\n${r.stdout}${r.stderr}`);
  }
  shared = tempDir("mozart-bin-");
  binary = join(shared.path, "mozart");
  copyFileSync(BUILT, binary);
}, 300_000);

afterAll(() => shared?.cleanup());

describe(`the ${hostTarget()} binary`, () => {
  let box: ReturnType<typeof tempDir>;
  let env: Record<string, string>;
  beforeEach(() => {
    box?.cleanup();
    box = tempDir("mozart-e2e-");
    mkdirSync(join(box.path, "home"));
    env = { PATH: "/usr/bin:/bin", HOME: join(box.path, "home"), MOZART_HOME: join(box.path, "mozart-home") };
    // The offline example exactly as shipped: the job file and the script its backend runs.
    copyFileSync(join(ROOT, "examples", "quickstart.yaml"), join(box.path, "quickstart.yaml"));
    cpSync(join(ROOT, "examples", "scripts"), join(box.path, "scripts"), { recursive: true });
  });
  afterAll(() => box?.cleanup());

  const run = (args: string[], extraEnv: Record<string, string> = {}): CliResult => {
    const r = spawnSync(binary, args, { cwd: box.path, env: { ...env, ...extraEnv }, encoding: "utf8" });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const status = (job: string) => {
    const r = run(["status", job, "--json"]);
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as { status: string; progress: { completed: number; total: number }; batches: Array<{ status: string }> };
  };

  test("--version names the package version and, from a git checkout, the commit", () => {
    const r = run(["--version"]);
    expect(r.code).toBe(0);
    // The commit is the one the binary was built at, which may be older than HEAD: check its shape.
    const shape = gitCommit() ? `\\([0-9a-f]{4,40}\\)` : "";
    expect(r.stdout).toMatch(new RegExp(`^mozart ${pkg.version.replace(/\./g, "\\.")} ?${shape}\n$`));
  });

  test("validate accepts the quickstart and points at file:line:col in a broken job", () => {
    const ok = run(["validate", "quickstart.yaml"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("quickstart.yaml is valid: job quickstart");
    writeFileSync(join(box.path, "bad.yaml"), readFileSync(join(box.path, "quickstart.yaml"), "utf8").replace("retry:", "retyr:"));
    const bad = run(["validate", "bad.yaml"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad\.yaml:\d+:1 retyr: unknown key "retyr"/);
    expect(bad.stderr).toContain('did you mean "retry"?');
  });

  for (const backend of ["sqlite", "json"] as const) {
    test(`run the offline quickstart with ${backend} state, then status --json`, () => {
      if (backend === "json") writeFileSync(join(box.path, "quickstart.yaml"), `${readFileSync(join(box.path, "quickstart.yaml"), "utf8")}\nstate_backend: json\n`);
      const r = run(["run", "quickstart.yaml"]);
      expect(r.stderr).not.toContain("error");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("completed: 3/3 batches");
      const state = join(box.path, "workspace", ".mozart");
      expect(existsSync(join(state, "state.db"))).toBe(backend === "sqlite");
      const s = status("quickstart");
      expect(s.status).toBe("completed");
      expect(s.progress).toMatchObject({ completed: 3, total: 3 });
      expect(readFileSync(join(box.path, "workspace", "output", "batch3-result.md"), "utf8")).toContain("## Summary");
      expect(existsSync(join(env.MOZART_HOME!, "jobs", "quickstart.json"))).toBe(true);
    });
  }

  test("SIGINT during batch 1 pauses with exit 130, and resume completes the job", async () => {
    writeFileSync(
      join(box.path, "slow.yaml"),
      [
        "name: slow",
        "workspace: ./ws",
        "pause_between_batches_seconds: 0",
        "backend:",
        "  type: command",
        '  command: "sleep 2; mkdir -p out; echo done > out/b{batch_num}.md"',
        "batch: { size: 1, total_items: 3 }",
        "prompt: { template: 'batch {{ batch_num }}' }",
        "validations:",
        "  - { type: file_exists, path: 'out/b{batch_num}.md' }",
        "",
      ].join("\n"),
    );
    const child = spawn(binary, ["run", "slow.yaml"], { cwd: box.path, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    const started = new Promise<void>((res) =>
      child.stderr.on("data", (d) => {
        stderr += d;
        if (stderr.includes("batch 1/3 started")) res();
      }),
    );
    const exited = new Promise<number | null>((res) => child.on("close", (code) => res(code)));
    await Promise.race([started, exited]);
    child.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stdout).toContain("mozart resume slow");
    const paused = status("slow");
    expect(paused.status).toBe("paused");
    // The first Ctrl+C lets the running attempt finish; nothing else starts.
    expect(paused.batches.map((b) => b.status)).toEqual(["completed", "pending", "pending"]);

    const resumed = run(["resume", "slow"]);
    expect(resumed.code).toBe(0);
    expect(status("slow")).toMatchObject({ status: "completed", progress: { completed: 3, total: 3 } });
  }, 60_000);

  test("dashboard serves /, /docs and /openapi.json from the binary alone, and Ctrl+C stops it", async () => {
    expect(run(["run", "quickstart.yaml", "-q"]).code).toBe(0);
    const child = spawn(binary, ["dashboard", "--port", "0", "--json"], { cwd: box.path, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    const exited = new Promise<number | null>((res) => child.on("close", (code) => res(code)));
    try {
      for (let i = 0; i < 200 && !stdout.includes("\n"); i++) await Bun.sleep(50);
      const { url } = JSON.parse(stdout) as { url: string };
      const page = await fetch(`${url}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("app.js");
      for (const path of ["/app.js", "/app.css", "/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"]) expect((await fetch(`${url}${path}`)).status, path).toBe(200);
      const doc = (await (await fetch(`${url}/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> };
      expect(doc.openapi).toBe("3.1.0");
      expect(doc.paths["/api/jobs/{id}/events"]).toBeDefined();
      const jobs = (await (await fetch(`${url}/api/jobs`)).json()) as { jobs: Array<{ job_id: string; status: string }> };
      expect(jobs.jobs).toEqual([expect.objectContaining({ job_id: "quickstart", status: "completed" })]);
    } finally {
      child.kill("SIGINT");
    }
    expect(await exited).toBe(0);
  }, 60_000);

  test("a .env or bunfig.toml in the working directory changes nothing", () => {
    // Bun never lets .env override a variable that is already set, so the probe is MOZART_HOME
    // left unset: the real home is then derived from XDG_STATE_HOME, and a loaded .env would win.
    const { MOZART_HOME: _unset, ...bare } = env;
    env = { ...bare, XDG_STATE_HOME: join(box.path, "state") };
    writeFileSync(join(box.path, ".env"), `MOZART_HOME=${join(box.path, "evil-home")}\nFORCE_COLOR=1\n`);
    writeFileSync(join(box.path, "bunfig.toml"), 'preload = ["./evil.ts"]\n');
    writeFileSync(join(box.path, "evil.ts"), `require("node:fs").writeFileSync(${JSON.stringify(join(box.path, "PRELOADED"))}, "x");\n`);
    const r = run(["run", "quickstart.yaml"]);
    expect(r.code).toBe(0);
    expect(existsSync(join(box.path, "state", "mozart", "jobs", "quickstart.json"))).toBe(true);
    expect(existsSync(join(box.path, "evil-home"))).toBe(false);
    expect(r.stdout + r.stderr).not.toContain("\x1b["); // FORCE_COLOR from .env would colour the output
    expect(existsSync(join(box.path, "PRELOADED"))).toBe(false);
  });
});
