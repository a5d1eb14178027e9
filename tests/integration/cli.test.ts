/** The command line as a user meets it: help, version, flags anywhere, exit codes, --json, colour. */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { FIXTURES, MAIN, mozart, ROOT, tempDir, testEnv } from "../helpers.ts";

const QUICKSTART = join(ROOT, "examples", "quickstart.yaml");
const SEED_JOB = join(FIXTURES, "seed", "my-job.yaml");
const COMMANDS = ["run", "resume", "status", "list", "validate", "schema"];

describe("help and version", () => {
  test("mozart --help lists the commands and exit codes", () => {
    const r = mozart(["--help"]);
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toContain(c);
    expect(r.stdout).toContain("EXIT CODES");
  });
  for (const c of COMMANDS) {
    test(`mozart ${c} --help`, () => {
      const r = mozart([c, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`mozart ${c}`);
      expect(r.stdout).toContain("--verbose");
    });
  }
  for (const args of [["-V"], ["--version"], ["-V", "validate", "x.yaml"], ["validate", "x.yaml", "--version"]]) {
    test(`version: mozart ${args.join(" ")}`, () => {
      const r = mozart(args);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(`mozart ${pkg.version}`);
    });
  }
  test("--version --json is JSON", () => {
    expect(JSON.parse(mozart(["--version", "--json"]).stdout).version).toBe(pkg.version);
  });
});

describe("usage errors exit 2 with a suggestion", () => {
  test("unknown command", () => {
    const r = mozart(["valdiate", QUICKSTART]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "valdiate"');
    expect(r.stderr).toContain('did you mean "mozart validate"?');
  });
  test("unknown long flag", () => {
    const r = mozart(["run", QUICKSTART, "--dryrun"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option --dryrun");
    expect(r.stderr).toContain("did you mean --dry-run?");
  });
  test("unknown short flag inside a cluster", () => {
    const r = mozart(["run", QUICKSTART, "-nx"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option -x");
  });
  test("unknown global flag before the command", () => {
    const r = mozart(["--bogus", "validate", QUICKSTART]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown global option --bogus");
  });
  test("missing argument", () => {
    const r = mozart(["validate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("CONFIG");
  });
  test("extra argument", () => {
    const r = mozart(["validate", QUICKSTART, "extra.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unexpected argument "extra.yaml"');
  });
});

describe("global flags before or after the command", () => {
  test("-q before and -v after are both accepted", () => {
    expect(mozart(["-q", "validate", QUICKSTART]).code).toBe(0);
    expect(mozart(["validate", QUICKSTART, "-v"]).code).toBe(0);
    expect(mozart(["--verbose", "run", QUICKSTART, "-n"]).code).toBe(0);
  });
  test("short flags combine: -nv", () => {
    const r = mozart(["run", QUICKSTART, "-nv"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Dry run");
  });
});

describe("validate", () => {
  test("human summary", () => {
    const r = mozart(["validate", QUICKSTART]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("is valid: job quickstart");
    expect(r.stdout).toContain("batches:       3 (10 items each, items 1–25)");
    expect(r.stdout).toContain("backend:       command");
    expect(r.stdout).toContain("validations:   2");
    expect(r.stdout).toContain("notifications: 0");
  });
  test("--json round trip", () => {
    const r = mozart(["validate", QUICKSTART, "--json"]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ valid: true, job_name: "quickstart", total_batches: 3, backend: "command", validations: 2, notifications: 0 });
  });
});

describe("run --dry-run", () => {
  test("plan, prompt, validations and invocation", () => {
    const r = mozart(["run", SEED_JOB, "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Batch plan (10 batches)");
    expect(r.stdout).toMatch(/10\s+91–100/);
    expect(r.stdout).toContain("Process batch 1 of 10.\nItems 1 to 10.");
    expect(r.stdout).toContain(join(FIXTURES, "seed", "workspace", "output", "batch1-result.md"));
    expect(r.stdout).toMatch(/claude -p --output-format json --dangerously-skip-permissions/);
  });
  test("--batch N shows another batch", () => {
    const r = mozart(["run", SEED_JOB, "-n", "--batch", "4"]);
    expect(r.stdout).toContain("Process batch 4 of 10.\nItems 31 to 40.");
    expect(r.stdout).toContain("batch4-result.md");
  });
  test("--batch out of range is a usage error", () => {
    const r = mozart(["run", SEED_JOB, "-n", "--batch", "11"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("the job has 10 batches");
  });
  test("--json carries every batch with its rendered prompt", () => {
    const r = mozart(["run", SEED_JOB, "--dry-run", "--json"]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.job_name).toBe("my-batch-job");
    expect(doc.total_batches).toBe(10);
    expect(doc.batches).toHaveLength(10);
    expect(doc.batches[9]).toEqual({ batch_num: 10, start_item: 91, end_item: 100, prompt: "Process batch 10 of 10.\nItems 91 to 100.\n\nComplete all items correctly for a reward!\n" });
    expect(doc.invocation.argv).toContain("--dangerously-skip-permissions");
  });
  test("the command backend's invocation has its placeholders expanded", () => {
    const r = mozart(["run", QUICKSTART, "-n", "--json"]);
    const doc = JSON.parse(r.stdout);
    expect(doc.invocation.argv.join(" ")).toContain(join(ROOT, "examples", "scripts", "offline-agent.sh"));
  });
});

describe("large --json output through a slow pipe", () => {
  test("is never cut short (process exit waits for stdout)", () => {
    const t = tempDir();
    try {
      const job = join(t.path, "big.yaml");
      writeFileSync(job, 'name: big\nbatch: {size: 1, total_items: 3000}\nprompt: {template: "Process batch {{ batch_num }} of {{ total_batches }} with a long enough prompt."}\nbackend: {type: command, command: "true"}\n');
      const r = spawnSync("sh", ["-c", `"${process.execPath}" "${MAIN}" run "${job}" -n --json | (sleep 0.5; cat)`], { encoding: "utf8", maxBuffer: 64 << 20, env: testEnv() });
      expect(r.stdout.length).toBeGreaterThan(300_000);
      expect(JSON.parse(r.stdout).batches).toHaveLength(3000);
    } finally {
      t.cleanup();
    }
  });
});

describe("schema", () => {
  test("prints a JSON Schema", () => {
    const r = mozart(["schema"]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.$schema).toContain("json-schema.org");
    expect(s.required).toEqual(["name", "batch", "prompt"]);
  });
});

describe("colour", () => {
  test("no escape codes when stdout is not a TTY", () => {
    const r = mozart(["validate", QUICKSTART]);
    expect(r.stdout).not.toContain("\x1b[");
  });
  test("FORCE_COLOR turns colour on, NO_COLOR wins over it", () => {
    expect(mozart(["validate", QUICKSTART], { env: { FORCE_COLOR: "1" } }).stdout).toContain("\x1b[");
    expect(mozart(["validate", QUICKSTART], { env: { FORCE_COLOR: "1", NO_COLOR: "1" } }).stdout).not.toContain("\x1b[");
  });
});
