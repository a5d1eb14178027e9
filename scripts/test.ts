/**
 * The whole test suite, then one line CI can read, "N passed, N failed", from the real counts;
 * exits non-zero on any failure. Most slow files wait on child processes (sleeps, grace periods,
 * kill -9 rounds), so the files are spread over GROUPS `bun test` processes running side by
 * side, balanced by how long each file took on a 2-core machine: every test keeps to its own
 * temp folders, MOZART_HOME and process tags, so the groups never meet. Each line is prefixed
 * with its group. `bun scripts/test.ts <files or flags>` runs one `bun test` as given.
 */
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const GROUPS = 4;
/** Seconds each slow file's tests took with the groups side by side (the rest count 2 s): only used to balance them. */
const SECONDS: Record<string, number> = {
  "hostile/chaos-kill-json": 106,
  "hostile/chaos-kill-sqlite": 102,
  "crash-joiners": 85,
  "hostile/chaos-signals": 68,
  "hostile/million": 65,
  "fleet-chaos": 70,
  "hostile/chaos-state-sqlite": 60,
  engine: 52,
  worktrees: 51,
  crash: 50,
  orphans: 50,
  "hostile/chaos-state-json": 49,
  "engine-claude": 47,
  "hostile/storage": 45,
  fleet: 50,
  "hostile/signals": 42,
  "broken-configs": 44,
  "anthropic-batch": 42,
  "hostile/leases": 41,
  "claude-live": 45,
  "anthropic-api": 40,
  "hostile/holds": 36,
  "hostile/job-record": 34,
  "hostile/kill-resume": 32,
  cli: 28,
  state: 35,
  leases: 27,
  "browser/dashboard": 30,
  logs: 21,
  control: 20,
  "process-tree": 18,
  "worktrees-kill": 16,
  "hostile/nothing-to-do": 14,
  "hostile/readonly": 14,
  "hostile/json-errors": 13,
  shards: 12,
  "notify-run": 12,
  "dashboard-live": 11,
  "large-templates": 11,
  learning: 10,
  "hostile/durations": 10,
  deno: 10,
  "hostile/state-deleted": 10,
  "hostile/corrupt-state": 9,
  binary: 12,
  install: 9,
  stats: 9,
  backends: 8,
  "notify-cli": 8,
  "hostile/resume-saved": 7,
  streams: 7,
  "hostile/pause-between": 7,
  "hostile/plan-change": 6,
  "hostile/escapes": 5,
  "dashboard-api": 6,
  validate: 5,
};
const weight = (file: string) => SECONDS[file.replace(/^\.\/tests\/(?:integration|unit|e2e)\//, "").replace(/^\.\/tests\//, "").replace(/\.test\.ts$/, "")] ?? 2;

interface Counts {
  passed: number;
  failed: number;
  code: number;
  /** The "(fail) …" lines, repeated at the end so a log's tail names what failed. */
  failures: string[];
  seconds: number;
}

function runBunTest(args: string[], label: string): Promise<Counts> {
  const started = Date.now();
  return new Promise((done) => {
    const child = spawn(process.execPath, ["test", "--timeout=60000", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: process.env });
    let text = "";
    const relay = (stream: NodeJS.WriteStream) => {
      let partial = "";
      return (d: Buffer) => {
        const chunk = partial + d.toString();
        text += d.toString();
        const lines = chunk.split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) stream.write(label ? `${label} ${line}\n` : `${line}\n`);
      };
    };
    child.stdout.on("data", relay(process.stdout));
    child.stderr.on("data", relay(process.stderr));
    child.on("close", (c) => {
      const count = (word: string) => {
        const all = [...text.matchAll(new RegExp(`^\\s*(\\d+) ${word}$`, "gm"))];
        return all.length ? Number(all[all.length - 1]![1]) : undefined;
      };
      const code = c ?? 1;
      let failed = count("fail") ?? 0;
      // A crash before the summary, or a non-zero exit with no counted failure, is still a failure.
      if (code !== 0 && failed === 0) failed = 1;
      const failures = namedFailures(text).map((f) => `${label ? `${label} ` : ""}${f}`);
      if (code !== 0 && !failures.length) failures.push(`${label ? `${label} ` : ""}bun test exited with ${code} before naming a failure`);
      done({ passed: count("pass") ?? 0, failed, code, failures, seconds: Math.round((Date.now() - started) / 1000) });
    });
  });
}

/** Each failed test once, with its file, and each error bun found between tests (a module that failed to load). */
function namedFailures(text: string): string[] {
  const found = new Set<string>();
  let file = "";
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const header = /^(tests\/\S+\.test\.ts):$/.exec(line);
    if (header) file = header[1]!;
    else if (/^\d+ tests? failed:$/.test(line)) file = "";
    else if (line.startsWith("(fail) ")) {
      const name = line.replace(/ \[[\d.]+m?s\]$/, "");
      if (![...found].some((f) => f.endsWith(name))) found.add(file ? `${file}: ${name}` : name);
    } else if (line.startsWith("# Unhandled error between tests")) {
      const error = lines.slice(i + 1, i + 6).find((l) => l.trim() && !/^-+$/.test(l.trim()));
      found.add(`${file || "(between files)"}: unhandled error: ${error?.trim() ?? "?"}`);
    }
  }
  return [...found];
}

function testFiles(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith(".test.ts")).map((f) => `./${relative(ROOT, join(dir, f))}`);
}

const args = process.argv.slice(2);
let results: Counts[];
if (args.length) results = [await runBunTest(args, "")];
else {
  // Longest first, each to the group with the least so far.
  const groups = Array.from({ length: GROUPS }, () => ({ files: [] as string[], seconds: 0 }));
  for (const file of testFiles(join(ROOT, "tests")).sort((a, b) => weight(b) - weight(a) || a.localeCompare(b))) {
    const g = groups.reduce((min, x) => (x.seconds < min.seconds ? x : min));
    g.files.push(file);
    g.seconds += weight(file);
  }
  results = await Promise.all(groups.map((g, i) => runBunTest(g.files, `[${i + 1}]`)));
}
if (results.length > 1) console.log(`groups took ${results.map((r) => `${r.seconds}s`).join(", ")}`);
const failures = results.flatMap((r) => r.failures);
if (failures.length) console.log(`\nfailed:\n${failures.join("\n")}`);
const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || results.some((r) => r.code !== 0) ? 1 : 0);
