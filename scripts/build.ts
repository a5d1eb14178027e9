/**
 * Builds the standalone `mozart` binaries and their SHA256SUMS.
 *
 *   bun scripts/build.ts                  every release target (bun run build)
 *   bun scripts/build.ts --host           only this machine's target (bun run build:host)
 *   bun scripts/build.ts --target linux-arm64 [--target …] [--out dir]
 *
 * Cross-target runtimes are fetched by `bun build` itself from registry.npmjs.org (~100 MB
 * each, cached in BUN_INSTALL_CACHE_DIR or ~/.bun/install/cache); the host target needs no
 * download because it reuses the running bun.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import pkg from "../package.json" with { type: "json" };

export const ROOT = resolve(import.meta.dir, "..");
export const ENTRY = join(ROOT, "src", "main.ts");
export const DIST = join(ROOT, "dist");

/** Release targets, named as in the asset names and install.sh (`mozart-<name>[.exe]`). */
export const TARGETS = ["linux-x64", "linux-arm64", "linux-x64-musl", "darwin-x64", "darwin-arm64", "windows-x64"] as const;
export type Target = (typeof TARGETS)[number];

export function assetName(target: Target): string {
  return `mozart-${target}${target.startsWith("windows-") ? ".exe" : ""}`;
}

/** The target this machine runs: process.report tells glibc from musl (no glibc version on musl). */
export function hostTarget(): Target {
  const os = process.platform === "win32" ? "windows" : process.platform;
  const arch = process.arch;
  let name = `${os}-${arch}`;
  if (os === "linux") {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    if (header && !header.glibcVersionRuntime) name += "-musl";
  }
  if (!(TARGETS as readonly string[]).includes(name)) throw new Error(`no mozart build target for this machine (${name}); targets: ${TARGETS.join(", ")}`);
  return name as Target;
}

/** The short commit, embedded so `mozart --version` names the exact build; none outside a git checkout. */
export function gitCommit(): string | undefined {
  const r = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" });
  const sha = r.status === 0 ? r.stdout.trim() : "";
  return /^[0-9a-f]{4,40}$/.test(sha) ? sha : undefined;
}

/**
 * The exact flags: no .env/bunfig autoload (a user's cwd must not reconfigure the binary), esm so
 * --bytecode works with top-level await, and --splitting so each lazily imported command is its
 * own chunk inside the binary: `--version` then loads a few KB instead of the whole 1.7 MB bundle
 * (12 ms → 5 ms).
 */
export function buildArgs(target: Target, outfile: string, commit: string | undefined): string[] {
  return [
    "build",
    ENTRY,
    "--compile",
    "--minify",
    "--splitting",
    "--bytecode",
    "--format=esm",
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    `--target=bun-${target}`,
    ...(commit ? ["--define", `MOZART_COMMIT=${JSON.stringify(commit)}`] : []),
    "--outfile",
    outfile,
  ];
}

export function sha256File(path: string): Promise<string> {
  return new Promise((res, rej) => {
    const hash = createHash("sha256");
    createReadStream(path)
      .on("data", (chunk) => hash.update(chunk))
      .on("error", rej)
      .on("end", () => res(hash.digest("hex")));
  });
}

/** `sha256sum -c` format: "<hex>  <name>", names relative to the folder holding the file. */
export async function writeChecksums(dir: string, files: string[]): Promise<string> {
  const lines: string[] = [];
  for (const file of [...files].sort()) lines.push(`${await sha256File(file)}  ${basename(file)}`);
  const out = join(dir, "SHA256SUMS");
  writeFileSync(`${out}.tmp`, `${lines.join("\n")}\n`);
  renameSync(`${out}.tmp`, out);
  return out;
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

export interface Built {
  target: Target;
  file: string;
  bytes: number;
}

export async function build(targets: readonly Target[], outDir = DIST): Promise<Built[]> {
  mkdirSync(outDir, { recursive: true });
  // A build that fails half way must not leave an old SHA256SUMS beside new binaries.
  rmSync(join(outDir, "SHA256SUMS"), { force: true });
  const commit = gitCommit();
  console.log(`mozart ${pkg.version}${commit ? ` (${commit})` : " (no git commit)"}: building ${targets.join(", ")}`);
  const built: Built[] = [];
  for (const target of targets) {
    const file = join(outDir, assetName(target));
    const started = performance.now();
    const r = spawnSync(process.execPath, buildArgs(target, file, commit), { cwd: ROOT, encoding: "utf8" });
    if (r.status !== 0) {
      process.stderr.write(r.stdout + r.stderr);
      throw new Error(`bun build for ${target} failed (exit ${r.status ?? r.signal})`);
    }
    const bytes = statSync(file).size;
    built.push({ target, file, bytes });
    console.log(`  ${assetName(target).padEnd(28)} ${String(bytes).padStart(11)} bytes  ${mb(bytes).padStart(10)}  ${((performance.now() - started) / 1000).toFixed(1)}s`);
  }
  const host = built.find((b) => b.target === safeHost());
  if (host) smokeTest(host.file, commit);
  const sums = await writeChecksums(outDir, built.map((b) => b.file));
  console.log(`  ${basename(sums)} covers ${built.length} file${built.length === 1 ? "" : "s"}`);
  return built;
}

function safeHost(): Target | undefined {
  try {
    return hostTarget();
  } catch {
    return undefined;
  }
}

/** A binary that cannot even print its version must never reach SHA256SUMS. */
function smokeTest(file: string, commit: string | undefined): void {
  const r = spawnSync(file, ["--version"], { encoding: "utf8", env: { PATH: "/usr/bin:/bin" } });
  const want = `mozart ${pkg.version}${commit ? ` (${commit})` : ""}`;
  if (r.status !== 0 || r.stdout.trim() !== want) {
    throw new Error(`${basename(file)} --version printed ${JSON.stringify(r.stdout.trim())} (exit ${r.status}); expected ${JSON.stringify(want)}`);
  }
}

function parseArgs(argv: string[]): { targets: Target[]; outDir: string } {
  const targets: Target[] = [];
  let outDir = DIST;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--host") targets.push(hostTarget());
    else if (a === "--target" || a === "--out") {
      const v = argv[++i];
      if (!v) throw new Error(`${a} needs a value`);
      if (a === "--out") outDir = resolve(v);
      else if ((TARGETS as readonly string[]).includes(v)) targets.push(v as Target);
      else throw new Error(`unknown target ${v}; targets: ${TARGETS.join(", ")}`);
    } else throw new Error(`unknown option ${a}; usage: bun scripts/build.ts [--host] [--target <name>]… [--out <dir>]`);
  }
  return { targets: targets.length ? [...new Set(targets)] : [...TARGETS], outDir };
}

if (import.meta.main) {
  try {
    const { targets, outDir } = parseArgs(process.argv.slice(2));
    await build(targets, outDir);
  } catch (err) {
    console.error(`build: ${(err as Error).message}`);
    process.exit(1);
  }
}
