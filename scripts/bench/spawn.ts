/**
 * What one spawn costs Mozart itself: N runs of `/bin/sh -c true` through runProcess at
 * concurrency C, on each spawn path this runtime has (Bun.spawn and the portable
 * node:child_process path under Bun; the portable path alone under Deno). Reports our own CPU
 * time (process.cpuUsage: user + system) and wall time, per spawn, median of R rounds after a
 * warm-up. Run by hand: bun scripts/bench/spawn.ts [N] [C] [R], or deno run -A scripts/bench/spawn.ts
 */
import process from "node:process";
import { runProcess } from "../../src/runtime/process.ts";

const N = Number(process.argv[2] ?? 1000);
const C = Number(process.argv[3] ?? 8);
const R = Number(process.argv[4] ?? 5);
const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };

async function round(portable: boolean): Promise<{ cpuMs: number; wallMs: number }> {
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next++ < N) {
        const r = await runProcess({ argv: ["/bin/sh", "-c", "true"], cwd: "/", env, portable });
        if (r.exit_code !== 0) throw new Error(`spawn failed: ${JSON.stringify(r)}`);
      }
    }),
  );
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { cpuMs: (cpu.user + cpu.system) / 1000, wallMs };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const runtime = typeof Bun !== "undefined" ? `bun ${Bun.version}` : "Deno" in globalThis ? "deno" : `node ${process.version}`;
const paths = typeof Bun !== "undefined" ? [false, true] : [true];
console.log(`${runtime}: ${N} spawns of /bin/sh -c true at concurrency ${C}, median of ${R} rounds`);
for (const portable of paths) {
  await round(portable);
  const rounds: Array<{ cpuMs: number; wallMs: number }> = [];
  for (let i = 0; i < R; i++) rounds.push(await round(portable));
  const cpu = median(rounds.map((r) => r.cpuMs));
  const wall = median(rounds.map((r) => r.wallMs));
  const name = portable ? "node:child_process (tinyexec)" : "Bun.spawn";
  console.log(`${name.padEnd(30)} cpu ${(cpu / N).toFixed(3)} ms/spawn (${cpu.toFixed(0)} ms)  wall ${(wall / N).toFixed(3)} ms/spawn (${wall.toFixed(0)} ms)`);
}
