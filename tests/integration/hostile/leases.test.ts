/**
 * Leases held by someone else: a runner on another host, or a live process on this host that is
 * not a mozart of ours. `run` is refused naming the holder and `--take-over`; `--take-over`
 * proceeds; an expired lease lets a plain run proceed; `status --watch` ends when the lease does.
 * Lock files left by a kill -9 (json: `.<job>.mutex`, `.<job>.mutex.break`) never hold up a restart.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { openStore } from "../../../src/state/store.ts";
import { sandbox, type Kind, type Sandbox } from "../engine-helpers.ts";
import { KINDS, lineCount, sqliteFile, stateDir, statusOf } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

async function plantLease(box: Sandbox, kind: Kind, lease: { pid: number; host: string; ttlMs: number }): Promise<void> {
  const store = await openStore({ kind, location: kind === "json" ? stateDir(box) : sqliteFile(box) });
  try {
    const now = Date.now();
    const r = await store.join("leased", { id: `planted-${lease.host}-${lease.pid}`, pid: lease.pid, host: lease.host, started_at: new Date(now).toISOString(), until: now + lease.ttlMs, renewed_at: now }, { now, ttlMs: lease.ttlMs, exclusive: true });
    expect(r.ok).toBe(true);
  } finally {
    await store.close();
  }
}

/** A pid that certainly belongs to no process any more. */
function deadPid(): number {
  const r = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
  return Number(r.stdout.trim());
}

for (const kind of KINDS) {
  describe(`leases held by others (${kind})`, () => {
    let box: Sandbox;
    let holder: ReturnType<typeof spawn> | undefined;
    afterEach(() => {
      holder?.kill("SIGKILL");
      holder = undefined;
      box?.cleanup();
    });

    const setup = () => {
      box = sandbox(kind);
      const file = box.job({
        name: "leased",
        batch: { size: 1, total_items: 3 },
        retry: { max_retries: 0, base_delay_seconds: 0.05, max_delay_seconds: 0.1 },
        backend: { type: "command", command: "echo $MOZART_BATCH_NUM >> {job_dir}/calls.log; [ -f {job_dir}/fixed ]", timeout_seconds: 20 },
      });
      expect(box.run(["run", file]).code).toBe(1);
      writeFileSync(join(box.dir, "fixed"), "");
      return file;
    };

    test("a runner on another host: refused naming it and --take-over; --take-over proceeds", async () => {
      const file = setup();
      await plantLease(box, kind, { pid: 4242, host: "build-07.example", ttlMs: 120_000 });
      for (const args of [["run", file], ["resume", "leased"]]) {
        const r = box.run(args);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain("already running (pid 4242 on build-07.example");
        expect(r.stderr).toContain("--take-over");
        const j = box.run([...args, "--json"]);
        expect((JSON.parse(j.stdout) as { error: { message: string } }).error.message).toContain("build-07.example");
      }
      expect(lineCount(join(box.dir, "calls.log"))).toBe(1);
      expect(statusOf(box, "leased").doc!.status).toBe("running");

      const t = box.run(["run", file, "--take-over"]);
      expect(t.stderr).toContain("taking over from runner pid 4242 on build-07.example");
      expect(t.code).toBe(0);
      expect(statusOf(box, "leased").doc!).toMatchObject({ status: "completed", runners: [] });
    });

    test("a live process on this host that is not our runner: refused; --take-over proceeds", async () => {
      const file = setup();
      holder = spawn("sleep", ["60"], { stdio: "ignore" });
      await plantLease(box, kind, { pid: holder.pid!, host: hostname(), ttlMs: 120_000 });
      const r = box.run(["run", file]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`already running (pid ${holder.pid} on ${hostname()}`);
      expect(r.stderr).toContain("--take-over");
      expect(box.run(["resume", "leased", "--take-over"]).code).toBe(0);
      expect(statusOf(box, "leased").doc!.status).toBe("completed");
    });

    test("a dead pid on this host holds nothing: a plain run proceeds at once", async () => {
      const file = setup();
      await plantLease(box, kind, { pid: deadPid(), host: hostname(), ttlMs: 120_000 });
      expect(statusOf(box, "leased").doc!.status).not.toBe("running");
      const started = Date.now();
      const w = box.run(["status", "leased", "--watch"]);
      expect(w.code).toBe(0);
      expect(Date.now() - started).toBeLessThan(15_000); // not the lease's 120 s
      expect(box.run(["run", file]).code).toBe(0);
    });

    test("another host's lease, once expired, lets a plain run proceed; status --watch ends with it", async () => {
      const file = setup();
      await plantLease(box, kind, { pid: 4242, host: "build-07.example", ttlMs: 2_500 });
      const started = Date.now();
      const w = box.run(["status", "leased", "--watch"], { MOZART_LEASE_TTL_SECONDS: "1" });
      expect(w.code).toBe(0);
      const took = Date.now() - started;
      expect(took).toBeLessThan(10_000);
      expect(w.stdout).toContain("running");
      const r = box.run(["run", file], { MOZART_LEASE_TTL_SECONDS: "1" });
      expect(r.stderr).not.toContain("already running");
      expect(r.code).toBe(0);
      expect(statusOf(box, "leased").doc!.status).toBe("completed");
    });
  });
}

describe("lock files left by a kill -9 (json)", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  const cases: Array<[string, (dir: string, pid: number) => void]> = [
    ["a mutex with a dead pid", (dir, pid) => writeFileSync(join(dir, ".stale.mutex"), `${pid}\n${hostname()}\n${Date.now()}`)],
    ["a mutex and its break guard, both with a dead pid", (dir, pid) => {
      writeFileSync(join(dir, ".stale.mutex"), `${pid}\n${hostname()}\n${Date.now()}`);
      writeFileSync(join(dir, ".stale.mutex.break"), `${pid}\n${hostname()}\n${Date.now()}`);
    }],
    ["an empty mutex (killed between create and write)", (dir) => writeFileSync(join(dir, ".stale.mutex"), "")],
    ["a break guard alone, with a dead pid", (dir, pid) => writeFileSync(join(dir, ".stale.mutex.break"), `${pid}\n${hostname()}\n${Date.now()}`)],
  ];
  for (const [what, plant] of cases) {
    test(`${what} does not hold up a restart`, () => {
      box = sandbox("json");
      const file = box.job({ name: "stale", batch: { size: 1, total_items: 3 }, backend: { type: "command", command: "[ -f {job_dir}/fixed ]", timeout_seconds: 20 }, retry: { max_retries: 0 } });
      expect(box.run(["run", file]).code).toBe(1);
      plant(stateDir(box), deadPid());
      writeFileSync(join(box.dir, "fixed"), "");
      const started = Date.now();
      const r = box.run(["resume", "stale"]);
      expect(r.code).toBe(0);
      expect(Date.now() - started).toBeLessThan(8_000); // below the 10 s after which any mutex counts as stale
      expect(statusOf(box, "stale").doc!.status).toBe("completed");
    });
  }
});
