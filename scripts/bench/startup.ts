/**
 * Start-up time of the compiled binary, hyperfine-style (warm-up runs, then the median of N):
 * `mozart --version`, `mozart validate examples/quickstart.yaml`, `mozart status <job> --json`,
 * with `node -e 0` and `bun -e 0` on the same machine for scale. Run by hand after
 * `bun run build:host`: bun scripts/bench/startup.ts [runs]
 */
import { cpSync, existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { arch, platform, tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..", "..");
const RUNS = Number(process.argv[2] ?? 30);
const WARMUP = 5;
const os = platform() === "win32" ? "windows" : platform();
const bin = join(ROOT, "dist", `mozart-${os}-${arch()}${os === "windows" ? ".exe" : ""}`);
if (!existsSync(bin)) {
  console.error(`no binary at ${bin}: run \`bun run build:host\` first`);
  process.exit(1);
}

const home = mkdtempSync(join(tmpdir(), "mozart-startup-"));
const env = { ...process.env, MOZART_HOME: join(home, "home"), NO_COLOR: "1" };
// A finished job to ask `status` about, run from a copy so the checkout's examples stay untouched.
cpSync(join(ROOT, "examples"), join(home, "examples"), { recursive: true, filter: (src) => !src.includes("workspace") });
Bun.spawnSync([bin, "-q", "run", join(home, "examples", "quickstart.yaml")], { env, stdout: "ignore", stderr: "ignore" });

function measure(name: string, argv: string[]): number {
  for (let i = 0; i < WARMUP; i++) Bun.spawnSync(argv, { env, stdout: "ignore", stderr: "ignore" });
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const p = Bun.spawnSync(argv, { env, stdout: "ignore", stderr: "ignore" });
    times.push(performance.now() - t0);
    if (p.exitCode !== 0) throw new Error(`${name} exited ${p.exitCode}`);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]!;
  console.log(`${name.padEnd(44)} median ${median.toFixed(1).padStart(6)} ms   min ${times[0]!.toFixed(1)} ms   max ${times[times.length - 1]!.toFixed(1)} ms`);
  return median;
}

const version = measure("mozart --version", [bin, "--version"]);
measure("mozart validate examples/quickstart.yaml", [bin, "validate", join(ROOT, "examples", "quickstart.yaml")]);
measure("mozart status quickstart --json", [bin, "status", "quickstart", "--json"]);
const bunE = measure("bun -e 0", [process.execPath, "-e", "0"]);
try {
  measure("node -e 0", ["node", "-e", "0"]);
} catch {
  console.log("node -e 0                                    (node not found)");
}
console.log(`\n--version / bun -e 0 = ${(version / bunE).toFixed(2)}x (target ≤ 1.5x)`);
console.log(`binary ${bin}: ${(statSync(bin).size / 1024 / 1024).toFixed(1)} MiB`);
rmSync(home, { recursive: true, force: true });
