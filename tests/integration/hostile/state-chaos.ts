/**
 * State damaged at seeded random moments: between runs (the job paused) and during them, a state
 * file or the whole state is deleted, truncated, or overwritten with garbage. Whatever happens,
 * no command crashes (no "unexpected error", no stack trace), exit codes stay documented, the job
 * is never reported completed while a batch is not, and the damage can be got past: repair, or
 * (when the state is beyond repair) moving it aside and running again, completes the job.
 */
import { expect } from "bun:test";
import { existsSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync, openSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import type { CliResult } from "../../helpers.ts";
import { commandBackend, type Kind, type Sandbox } from "../engine-helpers.ts";
import { lineCount, mulberry32, sqliteFile, stateDir, statusOf } from "./hostile-helpers.ts";

const TOTAL = 12;

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    try {
      if (statSync(p).isDirectory()) out.push(...filesUnder(p));
      else out.push(p);
    } catch {
      // removed meanwhile
    }
  }
  return out;
}

/** One act of damage, chosen by `random`; returns what it did, for the failure message. */
export function damageState(box: Sandbox, kind: Kind, random: () => number): string {
  const garbage = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
  const r = random();
  if (r < 0.12) {
    rmSync(stateDir(box), { recursive: true, force: true });
    return "deleted the state folder";
  }
  const files = kind === "sqlite" ? [sqliteFile(box)].filter(existsSync) : filesUnder(stateDir(box)).filter((f) => !f.includes(`${join("", "output")}`));
  if (!files.length) return "nothing to damage";
  const file = files[Math.floor(random() * files.length)]!;
  const size = (() => {
    try {
      return statSync(file).size;
    } catch {
      return 0;
    }
  })();
  try {
    if (r < 0.45) {
      const to = Math.floor(random() * size);
      truncateSync(file, to);
      return `truncated ${file} to ${to} of ${size} bytes`;
    }
    if (r < 0.75) {
      if (kind === "sqlite" && size > 0) {
        // Garbage over a random stretch of the database (a torn or overwritten page).
        const at = Math.floor(random() * size);
        const fd = openSync(file, "r+");
        try {
          writeSync(fd, garbage(512), 0, 512, at);
        } finally {
          closeSync(fd);
        }
        return `wrote 512 garbage bytes at ${at} of ${file}`;
      }
      writeFileSync(file, garbage(1 + Math.floor(random() * 200)));
      return `replaced ${file} with garbage`;
    }
    if (kind === "json") {
      rmSync(file, { force: true });
      return `deleted ${file}`;
    }
    writeFileSync(file, "");
    for (const f of ["-wal", "-shm"]) rmSync(file + f, { force: true });
    return `emptied ${file}`;
  } catch (e) {
    return `could not damage ${file}: ${(e as Error).message}`;
  }
}

function sane(r: CliResult, what: string): void {
  const both = r.stdout + r.stderr;
  if (/unexpected error|^\s+at .*\.ts:\d+/m.test(both) || ![0, 1, 2, 130].includes(r.code)) {
    throw new Error(`${what}: exit ${r.code}, output:\n${both.slice(0, 2000)}`);
  }
}

/** The records never say completed unless every batch is; returns whether the job is completed. */
function honest(box: Sandbox, what: string): boolean {
  const { r, doc } = statusOf(box, "chaos");
  sane(r, `${what}: status`);
  if (!doc || r.code !== 0) return false;
  const done = doc.batches.filter((b) => b.status === "completed").length;
  if (doc.status === "completed" && (done !== TOTAL || doc.progress.damaged > 0)) throw new Error(`${what}: status says completed with ${done}/${TOTAL} batches completed, ${doc.progress.damaged} damaged`);
  expect(doc.progress.completed).toBe(done);
  return doc.status === "completed";
}

/** Gets past whatever the damage did: repair if it can, else move the state aside and start over. */
function recover(box: Sandbox, file: string, what: string): void {
  for (const step of [["repair", file], ["resume", "chaos"], ["run", file]]) {
    const r = box.run(step);
    sane(r, `${what}: ${step.join(" ")}`);
    if (step[0] !== "repair" && r.code === 0) {
      if (!honest(box, what)) {
        const s = statusOf(box, "chaos");
        throw new Error(`${what}: ${step.join(" ")} exited 0 but the job is not completed:\n${r.stdout}${r.stderr}\nstatus: ${s.r.stdout.slice(0, 1500)}${s.r.stderr}`);
      }
      return;
    }
  }
  // Beyond repair (a database that is not one, an emptied file): the documented way out.
  rmSync(stateDir(box), { recursive: true, force: true });
  const again = box.run(["run", file]);
  sane(again, `${what}: run after moving the state aside`);
  expect(again.code).toBe(0);
  expect(honest(box, what)).toBe(true);
}

export async function stateChaos(box: Sandbox, kind: Kind, seed: number, rounds: number): Promise<{ between: number; during: number }> {
  const random = mulberry32(seed);
  const file = box.job({ name: "chaos", batch: { size: 1, total_items: TOTAL }, backend: commandBackend("sleep 0.05; echo ok") });
  let between = 0;
  let during = 0;
  for (let k = 0; k < rounds; k++) {
    const midRun = k % 2 === 1;
    // A fresh start each round, paused part-way.
    rmSync(stateDir(box), { recursive: true, force: true });
    const p = box.start(["run", file]);
    const calls = lineCount(`${box.dir}/calls.log`);
    for (let i = 0; i < 400 && lineCount(`${box.dir}/calls.log`) < calls + 3; i++) await Bun.sleep(10);
    let what: string;
    if (midRun) {
      await Bun.sleep(Math.floor(random() * 300));
      what = `round ${k} (seed ${seed}), during the run: ${damageState(box, kind, random)}`;
      const r = await p.done;
      sane(r, what);
      during++;
    } else {
      p.child.kill("SIGINT");
      await p.done;
      what = `round ${k} (seed ${seed}), between runs: ${damageState(box, kind, random)}`;
      between++;
    }
    // Everything a user might type next behaves, and says nothing false.
    for (const args of [["status", "chaos"], ["status", file, "--json"], ["list"], ["logs", "chaos"], ["run", file, "--dry-run"]]) sane(box.run(args), `${what}: ${args.join(" ")}`);
    honest(box, what);
    recover(box, file, what);
  }
  return { between, during };
}
