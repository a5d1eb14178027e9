/** `mozart doctor`: local checks only, each a line with what to do; --json the same as one document. */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { runDoctor, type Check } from "../../src/cli/doctor.ts";
import { checkJob } from "../../src/config/check.ts";
import { loadJobFile } from "../../src/config/load.ts";
import { FIXTURES, mozart, tempDir } from "../helpers.ts";

const FAKE = join(FIXTURES, "fake-claude");

describe("mozart doctor", () => {
  let t: ReturnType<typeof tempDir>;
  afterEach(() => t?.cleanup());
  /** A clean environment: a HOME of its own, no login, no key. */
  const cleanEnv = () => ({ HOME: join(t.path, "home"), MOZART_HOME: join(t.path, "mozart-home"), ANTHROPIC_API_KEY: undefined, CLAUDE_CODE_OAUTH_TOKEN: undefined, CLAUDE_CONFIG_DIR: undefined, IS_SANDBOX: undefined });
  const jobFile = (backend: Record<string, unknown>) => {
    const path = join(t.path, "job.yaml");
    writeFileSync(path, stringify({ name: "doc-job", workspace: "./ws", batch: { size: 1, total_items: 1 }, prompt: { template: "x" }, backend }));
    return path;
  };
  const byName = (checks: Check[], name: string) => checks.find((c) => c.name === name)!;

  test("a clean environment: claude found with its version, not logged in (what to do), folders writable; --json is one document; fast", () => {
    t = tempDir();
    mkdirSync(join(t.path, "home"));
    const started = Date.now();
    const r = mozart(["doctor", "--json", "--port", "0"], { cwd: t.path, env: cleanEnv() });
    expect(Date.now() - started).toBeLessThan(5000); // the checks themselves take well under 2 s
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as { ok: boolean; checks: Check[] };
    expect(doc.ok).toBe(false);
    expect(byName(doc.checks, "claude")).toMatchObject({ status: "ok" });
    expect(byName(doc.checks, "claude").detail).toContain("2.1.197");
    expect(byName(doc.checks, "login")).toMatchObject({ status: "fail" });
    expect(byName(doc.checks, "login").hint).toContain("/login");
    expect(byName(doc.checks, "MOZART_HOME")).toMatchObject({ status: "ok" });
    expect(byName(doc.checks, "MOZART_HOME").detail).toMatch(/GB free/);
    expect(byName(doc.checks, "dashboard port")).toMatchObject({ status: "ok" });
    const text = mozart(["doctor", "--port", "0"], { cwd: t.path, env: { ...cleanEnv(), NO_COLOR: "1" } });
    expect(text.stdout).toMatch(/^✓ claude: /m);
    expect(text.stdout).toMatch(/^✗ login: Claude is not logged in/m);
  });

  test("logged in with ANTHROPIC_API_KEY also set: the job would bill the API", () => {
    t = tempDir();
    const config = join(t.path, "claude-config");
    mkdirSync(config);
    writeFileSync(join(config, ".credentials.json"), "{}");
    const r = mozart(["doctor", "--json", "--port", "0"], { cwd: t.path, env: { ...cleanEnv(), CLAUDE_CONFIG_DIR: config, ANTHROPIC_API_KEY: "sk-test" } });
    const doc = JSON.parse(r.stdout) as { checks: Check[] };
    expect(byName(doc.checks, "login")).toMatchObject({ status: "ok" });
    expect(byName(doc.checks, "billing")).toMatchObject({ status: "warn" });
    expect(byName(doc.checks, "billing").detail).toContain("bills the API");
  });

  test("without claude: the job's claude is missing, with the install hint; a taken dashboard port is named", async () => {
    t = tempDir();
    const file = jobFile({ type: "claude_cli", cli_path: join(t.path, "nope", "claude") });
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const r = mozart(["doctor", file, "--json", "--port", String(server.port)], { cwd: t.path, env: { ...cleanEnv(), ANTHROPIC_API_KEY: "sk-test" } });
      expect(r.code).toBe(1);
      const doc = JSON.parse(r.stdout) as { job_name: string; checks: Check[] };
      expect(doc.job_name).toBe("doc-job");
      expect(byName(doc.checks, "claude")).toMatchObject({ status: "fail" });
      expect(byName(doc.checks, "claude").hint).toContain("npm install -g @anthropic-ai/claude-code");
      expect(byName(doc.checks, "workspace")).toMatchObject({ status: "ok" });
      expect(byName(doc.checks, "dashboard port")).toMatchObject({ status: "warn" });
    } finally {
      server.stop(true);
    }
  });

  test("as root with skip_permissions and no IS_SANDBOX: ✗ with the fix; IS_SANDBOX=1 makes it fine", async () => {
    t = tempDir();
    const job = await checkJob(await loadJobFile(jobFile({ type: "claude_cli", cli_path: FAKE, skip_permissions: true })));
    const env = { PATH: process.env.PATH, HOME: join(t.path, "home"), MOZART_HOME: join(t.path, "mh"), ANTHROPIC_API_KEY: "sk-test" };
    const asRoot = await runDoctor({ env, job, uid: 0, cwd: t.path, port: 0 });
    expect(byName(asRoot, "user")).toMatchObject({ status: "fail" });
    expect(byName(asRoot, "user").hint).toContain("IS_SANDBOX=1");
    const sandboxed = await runDoctor({ env: { ...env, IS_SANDBOX: "1" }, job, uid: 0, cwd: t.path, port: 0 });
    expect(byName(sandboxed, "user")).toMatchObject({ status: "ok" });
    const user = await runDoctor({ env, job, uid: 1000, cwd: t.path, port: 0 });
    expect(byName(user, "user")).toMatchObject({ status: "ok" });
  });
});
