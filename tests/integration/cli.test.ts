/** The command line as a user meets it: help, version, flags anywhere, exit codes, --json, colour. */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { FIXTURES, MAIN, mozart, ROOT, tempDir, testEnv } from "../helpers.ts";

const QUICKSTART = join(ROOT, "examples", "quickstart.yaml");
const SEED_JOB = join(FIXTURES, "seed", "my-job.yaml");
const COMMANDS = ["run", "resume", "status", "list", "logs", "pause", "cancel", "repair", "forget", "clean", "dashboard", "worker", "merge-state", "db", "stats", "validate", "doctor", "notify", "schema"];

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

describe("--json: exactly one JSON document on stdout on every path", () => {
  const BROKEN = join(FIXTURES, "broken", "07-unknown-top-key.yaml");
  // [args, exit code, text the error message contains]
  const errors: Array<[string[], number, string]> = [
    [["bogus", "--json"], 2, 'unknown command "bogus"'],
    [["--json", "valdiate", QUICKSTART], 2, 'unknown command "valdiate"'],
    [["-j", "--bogus", "validate", QUICKSTART], 2, "unknown global option --bogus"],
    [["run", QUICKSTART, "--dryrun", "--json"], 2, "unknown option --dryrun"],
    [["run", QUICKSTART, "-nx", "-j"], 2, "unknown option -x"],
    [["run", QUICKSTART, "-nj", "-x"], 2, "unknown option -x"],
    [["list", "--bogus", "--json"], 2, "unknown option --bogus"],
    [["validate", QUICKSTART, "extra.yaml", "--json"], 2, 'unexpected argument "extra.yaml"'],
    [["schema", "extra", "--json"], 2, 'unexpected argument "extra"'],
    [["validate", "--json"], 2, "missing CONFIG"],
    [["run", "-j"], 2, "missing CONFIG"],
    [["status", "--json"], 2, "missing JOB"],
    [["status", "x", "-b", "--json"], 2, "--batch needs a value"],
    [["status", "x", "--batch", "--json"], 2, "--batch needs a value"],
    [["status", "x", "--json", "--batch"], 2, "--batch needs a value"],
    [["status", "x", "--batch=", "--json"], 2, "--batch needs a value"],
    [["run", QUICKSTART, "-n", "--json", "--batch", "-v"], 2, "--batch needs a value"],
    [["status", "x", "--batch", "abc", "--json"], 2, "--batch expects a batch number"],
    [["run", QUICKSTART, "-n", "--batch", "abc", "--json"], 2, "--batch expects a batch number"],
    [["run", QUICKSTART, "-n", "--batch", "-1", "--json"], 2, "--batch expects a batch number"],
    [["run", QUICKSTART, "--batch", "2", "--json"], 2, "--batch only applies with --dry-run"],
    [["run", SEED_JOB, "-n", "--batch", "11", "--json"], 2, "the job has 10 batches"],
    [["validate", "no-such-file.yaml", "--json"], 2, "cannot read job file"],
    [["validate", BROKEN, "--json"], 2, "unknown key"],
    [["status", "no-such-job", "--json"], 1, "job not found"],
    [["resume", "no-such-job", "--json"], 1, "job not found"],
  ];
  for (const [args, code, message] of errors) {
    test(`mozart ${args.map((a) => a.replace(ROOT + "/", "")).join(" ")} → exit ${code}`, () => {
      const home = tempDir();
      try {
        const r = mozart(args, { env: { MOZART_HOME: home.path } });
        expect(r.code).toBe(code);
        const doc = JSON.parse(r.stdout);
        const error = [doc.error].flat()[0];
        expect(error.message).toContain(message);
        // The human message still goes to stderr.
        expect(r.stderr).toContain("error:");
        expect(r.stderr).toContain(message);
      } finally {
        home.cleanup();
      }
    });
  }
  test("usage errors carry the exit code and a hint", () => {
    const doc = JSON.parse(mozart(["status", "x", "-b", "--json"]).stdout);
    expect(doc).toEqual({ error: { message: "--batch needs a value", hint: "usage: --batch N", exit_code: 2 } });
  });
  test("without --json, a flag missing its value is still a usage error", () => {
    const r = mozart(["status", "x", "-b"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("--batch needs a value");
  });
  test("--batch abc says it expects a batch number, before looking for the job", () => {
    const r = mozart(["status", "no-such-job", "--batch", "abc"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--batch expects a batch number, got "abc"');
    expect(r.stderr).not.toContain("not found");
  });
  test("a value flag takes its value in every spelling", () => {
    for (const args of [["--batch", "2"], ["--batch=2"]]) expect(mozart(["run", SEED_JOB, "-n", ...args]).stdout).toContain("Process batch 2 of 10.");
    for (const args of [["-b", "2"], ["-b2"], ["-wb", "2"]]) expect(mozart(["status", "no-such-job", ...args]).stderr).toContain("job not found");
  });
  test("mozart --json describes the program", () => {
    for (const args of [["--json"], ["-j"], ["--help", "--json"]]) {
      const r = mozart(args);
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.name).toBe("mozart");
      expect(doc.version).toBe(pkg.version);
      expect(doc.commands.map((c: { name: string }) => c.name)).toEqual(COMMANDS);
      for (const c of doc.commands) expect(c.description.length).toBeGreaterThan(10);
      expect(doc.exit_codes.map((e: { code: number }) => e.code)).toEqual([0, 1, 2, 130]);
    }
  });
  test("mozart <command> --help --json describes the command", () => {
    const doc = JSON.parse(mozart(["status", "--help", "--json"]).stdout);
    expect(doc.name).toBe("status");
    expect(doc.arguments).toEqual([{ name: "JOB", description: "Job id (its name) or job file", required: true }]);
    expect(doc.options).toContainEqual(expect.objectContaining({ name: "--batch", aliases: ["-b"], type: "string", value: "N" }));
  });
  test("schema --json is accepted: the schema is JSON already", () => {
    const r = mozart(["schema", "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).required).toEqual(["name", "batch", "prompt"]);
    expect(mozart(["--json", "schema"]).code).toBe(0);
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
    expect(r.stdout).toMatch(/claude -p --output-format stream-json --verbose --dangerously-skip-permissions/);
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
  test("JSON rules show what they ask: a jsonpath rule its assertions, a json_schema rule where its schema is", () => {
    const t = tempDir();
    try {
      const file = join(t.path, "json-rules.yaml");
      writeFileSync(
        file,
        [
          "name: json-rules",
          "batch: { size: 1, total_items: 2 }",
          "backend: { type: claude_cli, json_schema: { type: object } }",
          'prompt: { template: "x {{ batch_num }}" }',
          "validations:",
          "  - type: jsonpath",
          `    assert: ["$.count == 1", '$.title == "b1"']`,
          "  - type: json_schema",
          "    path: out/{batch_num}.json",
          "    schema: { type: object, properties: { count: { maximum: 1 } } }",
        ].join("\n"),
      );
      const human = mozart(["run", file, "-n", "--batch", "2"]);
      expect(human.code).toBe(0);
      expect(human.stdout).toMatch(/jsonpath +structured output: \$\.count == 1; \$\.title == "b1"/);
      expect(human.stdout).toContain(`json_schema      ${join(t.path, "workspace", "out", "2.json")} (schema: inline)`);
      const doc = JSON.parse(mozart(["run", file, "-n", "--json"]).stdout) as { validations: unknown[] };
      expect(doc.validations).toEqual([
        { type: "jsonpath", target: "structured output", description: null, assert: ["$.count == 1", '$.title == "b1"'] },
        { type: "json_schema", target: join(t.path, "workspace", "out", "1.json"), description: null, schema: "inline" },
      ]);
    } finally {
      t.cleanup();
    }
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

describe("text from a backend cannot drive the terminal", () => {
  test("a window title, a screen clear and a carriage return in a backend's output never reach it, colour on or off", () => {
    const t = tempDir();
    try {
      const job = join(t.path, "evil.yaml");
      writeFileSync(
        job,
        `name: evil\nbatch: {size: 1, total_items: 1}\nprompt: {template: "x"}\nretry: {max_retries: 0}\npause_between_batches_seconds: 0\n` +
          `backend: {type: command, command: "printf 'working\\\\033]0;pwned\\\\007\\\\033[2J\\\\r\\\\033]8;;http://x\\\\033\\\\\\\\done\\\\n'; exit 3"}\n`,
      );
      const env = { MOZART_HOME: join(t.path, "home") };
      for (const color of [{ FORCE_COLOR: "1" }, { NO_COLOR: "1" }]) {
        for (const args of [["run", job, "-v"], ["status", "evil"], ["status", "evil", "--batch", "1", "-v"]]) {
          const r = mozart(args, { cwd: t.path, env: { ...env, ...color } });
          const text = r.stdout + r.stderr;
          expect(text).toContain("working");
          expect(text).not.toContain("\x1b]");
          expect(text).not.toContain("\x07");
          expect(text).not.toContain("\x1b[2J");
          expect(text).not.toContain("\r");
          if ("NO_COLOR" in color) expect(text).not.toContain("\x1b");
        }
      }
    } finally {
      t.cleanup();
    }
  });
});
