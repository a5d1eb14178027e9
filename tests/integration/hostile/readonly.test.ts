/**
 * Looking never writes: `status` works on a state folder the user cannot write (as another user,
 * since root ignores permissions), a WAL left by a killed runner included; and status, list, logs
 * and the other commands that only look or steer, asked about a job whose state is gone, create
 * no `.mozart/` folder and no state.db.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { MAIN } from "../../helpers.ts";
import { commandBackend, sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS, lineCount, stateDir, waitFor } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

const isRoot = process.getuid?.() === 0;
/** Runs mozart as nobody (setpriv), when this machine allows it and nobody can read the sources. */
function asNobody(args: string[], env: Record<string, string>): { code: number; stdout: string; stderr: string } | undefined {
  const base = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];
  const probe = spawnSync("setpriv", [...base, "test", "-r", MAIN], { encoding: "utf8" });
  if (probe.status !== 0) return undefined;
  const r = spawnSync("setpriv", [...base, "env", "-i", `PATH=${process.env.PATH}`, "HOME=/tmp", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, MAIN, ...args], { encoding: "utf8" });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function chmodTree(path: string, mode: (isDir: boolean) => number): void {
  const s = statSync(path);
  if (s.isDirectory()) for (const name of readdirSync(path)) chmodTree(join(path, name), mode);
  chmodSync(path, mode(s.isDirectory()));
}

for (const kind of KINDS) {
  describe(`looking never writes (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => {
      if (box) chmodTree(box.dir, (d) => (d ? 0o755 : 0o644));
      box?.cleanup();
    });

    test("status, logs and list work on a read-only state folder, also with the WAL a kill -9 left", async () => {
      box = sandbox(kind);
      const file = box.job({ name: "ro", batch: { size: 1, total_items: 20 }, backend: commandBackend("sleep 0.2") });
      const p = box.start(["run", file]);
      await waitFor(() => lineCount(`${box.dir}/calls.log`) >= 3, "three batches");
      p.child.kill("SIGKILL");
      await p.done;
      await Bun.sleep(300);
      const before = readdirSync(stateDir(box)).sort();
      chmodTree(box.dir, (d) => (d ? 0o555 : 0o444));
      const env = { MOZART_HOME: box.home };
      // As root permissions do not apply: read as nobody where nobody can read the sources,
      // else as ourselves (the read-only open and "nothing changes" are still checked).
      const direct = (args: string[]) => {
        const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", env: { ...process.env, ...env } });
        return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
      };
      const reader = (args: string[]) => (isRoot ? (asNobody(args, env) ?? direct(args)) : direct(args));
      const s = reader(["status", "ro"]);
      expect(s.stderr).toBe("");
      expect(s.code).toBe(0);
      expect(s.stdout).toContain("job ro  paused");
      const j = reader(["status", "ro", "--json"]);
      expect(j.code).toBe(0);
      expect((JSON.parse(j.stdout) as { progress: { completed: number } }).progress.completed).toBeGreaterThanOrEqual(2);
      for (const args of [["status", file], ["logs", "ro"], ["list"], ["status", "ro", "--batch", "1"]]) {
        const r = reader(args);
        expect(r.stderr).not.toContain("error");
        expect(r.code).toBe(0);
      }
      expect(readdirSync(stateDir(box)).sort()).toEqual(before);
    });

    test("commands asked about a job whose state is gone create no .mozart and no state.db", () => {
      box = sandbox(kind);
      const file = box.job({ name: "gone", batch: { size: 1, total_items: 2 }, backend: { type: "command", command: "true", timeout_seconds: 20 } });
      expect(box.run(["run", file]).code).toBe(0);
      rmSync(stateDir(box), { recursive: true });
      for (const args of [["status", "gone"], ["status", file], ["status", "gone", "--json"], ["logs", "gone"], ["logs", file, "-f"], ["pause", "gone"], ["cancel", "gone"], ["resume", "gone"], ["repair", "gone"], ["list"], ["list", "--json"]]) {
        const r = box.run(args);
        expect(r.stderr).not.toContain("unexpected error");
        if (!args[0]!.startsWith("list")) {
          expect(r.code).toBe(1);
          expect(r.stderr + r.stdout).toMatch(/no state|not found/);
        }
        expect(existsSync(stateDir(box))).toBe(false);
      }
      expect(existsSync(join(box.dir, "ws"))).toBe(true);
    });
  });
}
