/**
 * scripts/install.sh against a real HTTP server on 127.0.0.1, under every POSIX shell found
 * (sh, dash, bash --posix). The "binaries" are small sh scripts that print which
 * asset they are, so each test can tell exactly what got installed and run it.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostTarget } from "../../scripts/build.ts";
import { ROOT, tempDir } from "../helpers.ts";

const SCRIPT = join(ROOT, "scripts", "install.sh");
const ASSETS = ["linux-x64", "linux-arm64", "linux-x64-musl", "darwin-x64", "darwin-arm64", "windows-x64"];
const fileOf = (platform: string) => `mozart-${platform}${platform.startsWith("windows") ? ".exe" : ""}`;
const fake = (version: string, platform: string) => `#!/bin/sh\necho "mozart ${version} (${platform})"\n`;
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

// Absolute paths: some tests run the installer with a PATH that holds no shell. These shells
// are on every Debian machine (dash is /bin/sh there); a missing one fails the run, never skips.
const SHELLS = [["sh"], ["dash"], ["bash", "--posix"]].map(([name = "", ...flags]) => {
  const path = Bun.which(name);
  if (!path) throw new Error(`install.sh tests need ${name} on PATH`);
  return { label: [name, ...flags].join(" "), argv: [path, ...flags] };
});

/** Writes a release folder: every asset plus SHA256SUMS, optionally tampered with. */
function release(dir: string, version: string, opts: { tamper?: string; omit?: string; broken?: string } = {}): void {
  mkdirSync(dir, { recursive: true });
  const sums: string[] = [];
  for (const p of ASSETS) {
    // "broken" stands in for a binary whose shared libraries are missing: it cannot start.
    const body = p === opts.broken ? "#!/bin/sh\nexit 127\n" : fake(version, p);
    writeFileSync(join(dir, fileOf(p)), p === opts.tamper ? body.replace("echo", "echo EVIL;") : body);
    if (p !== opts.omit) sums.push(`${sha256(body)}  ${fileOf(p)}`);
  }
  writeFileSync(join(dir, "SHA256SUMS"), `${sums.join("\n")}\n`);
}

let www: ReturnType<typeof tempDir>;
let server: ReturnType<typeof Bun.serve>;
let origin = "";
const requests: string[] = [];

beforeAll(() => {
  www = tempDir("mozart-install-www-");
  release(join(www.path, "releases", "latest", "download"), "9.9.9");
  release(join(www.path, "releases", "download", "v0.1.0"), "0.1.0");
  release(join(www.path, "tampered"), "9.9.9", { tamper: "linux-x64" });
  release(join(www.path, "missing"), "9.9.9", { omit: "linux-x64" });
  release(join(www.path, "musl-no-libstdcxx"), "9.9.9", { broken: "linux-x64-musl" });
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = decodeURIComponent(new URL(req.url).pathname);
      requests.push(path);
      const file = join(www.path, path);
      if (path.includes("..") || !existsSync(file) || !statSync(file).isFile()) return new Response("not found", { status: 404 });
      return new Response(Bun.file(file));
    },
  });
  origin = `http://127.0.0.1:${server.port}`;
});

afterAll(() => {
  server?.stop(true);
  www?.cleanup();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

for (const { label, argv: shell } of SHELLS) describe(`install.sh under ${label}`, () => {
  let box: ReturnType<typeof tempDir>;
  let bin: string;
  let home: string;
  beforeEach(() => {
    box?.cleanup();
    box = tempDir("mozart-install-");
    bin = join(box.path, "bin");
    home = join(box.path, "home");
    mkdirSync(home);
    requests.length = 0;
  });
  afterAll(() => box?.cleanup());

  /** A clean environment: only what the script needs, the local releases URL and the install dir. */
  async function install(args: string[] = [], env: Record<string, string | undefined> = {}, opts: { piped?: boolean } = {}): Promise<Run> {
    const full: Record<string, string> = {};
    const merged = { PATH: "/usr/bin:/bin", HOME: home, MOZART_INSTALL_RELEASES: `${origin}/releases`, MOZART_INSTALL_DIR: bin, ...env };
    for (const [k, v] of Object.entries(merged)) if (v !== undefined) full[k] = v;
    const argv = opts.piped ? [...shell, "-s", "--", ...args] : [...shell, SCRIPT, ...args];
    const child = Bun.spawn(argv, {
      cwd: box.path,
      env: full,
      stdin: opts.piped ? Bun.file(SCRIPT) : "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    return { code, stdout, stderr };
  }
  const installed = () => (existsSync(bin) ? readdirSync(bin).sort() : []);
  const platformEnv = (os: string, arch: string, libc = "glibc") => ({ MOZART_INSTALL_OS: os, MOZART_INSTALL_ARCH: arch, MOZART_INSTALL_LIBC: libc });

  const matrix: Array<[string, string, string, string, string]> = [
    ["Linux", "x86_64", "glibc", "linux-x64", "mozart"],
    ["Linux", "amd64", "glibc", "linux-x64", "mozart"],
    ["Linux", "aarch64", "glibc", "linux-arm64", "mozart"],
    ["Linux", "x86_64", "musl", "linux-x64-musl", "mozart"],
    ["Darwin", "arm64", "glibc", "darwin-arm64", "mozart"],
    ["Darwin", "x86_64", "glibc", "darwin-x64", "mozart"],
    ["MINGW64_NT-10.0-19045", "x86_64", "glibc", "windows-x64", "mozart.exe"],
    ["MSYS_NT-10.0", "x86_64", "glibc", "windows-x64", "mozart.exe"],
  ];
  for (const [os, arch, libc, platform, name] of matrix) {
    test(`${os} ${arch} ${libc} → ${fileOf(platform)} installed as ${name}`, async () => {
      const r = await install([], platformEnv(os, arch, libc));
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(installed()).toEqual([name]); // no temp files left behind
      expect(readFileSync(join(bin, name), "utf8")).toBe(fake("9.9.9", platform));
      expect(statSync(join(bin, name)).mode & 0o777).toBe(0o755);
      expect(requests).toEqual(["/releases/latest/download/SHA256SUMS", `/releases/latest/download/${fileOf(platform)}`]);
      expect(r.stdout).toContain(`mozart 9.9.9 (${platform})`); // the installer ran the installed binary
    });
  }

  test("a musl binary that cannot start gets the libstdc++ hint", async () => {
    const env = { ...platformEnv("Linux", "x86_64", "musl"), MOZART_INSTALL_BASE: `${origin}/musl-no-libstdcxx` };
    const r = await install([], env);
    expect(r.code).toBe(0);
    expect(installed()).toEqual(["mozart"]);
    expect(r.stdout).toContain("apk add libstdc++");
  });

  test("without overrides it detects this machine", async () => {
    const r = await install();
    expect(r.code).toBe(0);
    expect(readFileSync(join(bin, "mozart"), "utf8")).toBe(fake("9.9.9", hostTarget()));
  });

  test("works piped into the shell (curl … | sh -s -- --version X)", async () => {
    const r = await install(["--version", "0.1.0"], platformEnv("Linux", "x86_64"), { piped: true });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(readFileSync(join(bin, "mozart"), "utf8")).toBe(fake("0.1.0", "linux-x64"));
  });

  test("--version X downloads from the versioned release path", async () => {
    for (const v of ["0.1.0", "v0.1.0", "--version=0.1.0"]) {
      const r = await install(v.startsWith("--") ? [v] : ["--version", v], platformEnv("Linux", "aarch64"));
      expect(r.code).toBe(0);
      expect(readFileSync(join(bin, "mozart"), "utf8")).toBe(fake("0.1.0", "linux-arm64"));
      expect(requests).toContain("/releases/download/v0.1.0/mozart-linux-arm64");
      expect(requests.some((p) => p.includes("/latest/"))).toBe(false);
      requests.length = 0;
      rmSync(join(bin, "mozart")); // so the next spelling downloads again instead of finding it up to date
    }
  });

  test("--dry-run shows the default GitHub URLs: latest, and versioned with --version", async () => {
    const env = { ...platformEnv("Darwin", "arm64"), MOZART_INSTALL_RELEASES: undefined };
    const latest = await install(["--dry-run"], env);
    expect(latest.code).toBe(0);
    expect(latest.stdout).toContain("https://github.com/mozart-ai/mozart/releases/latest/download/mozart-darwin-arm64");
    const pinned = await install(["--dry-run", "--version", "0.2.0"], env);
    expect(pinned.stdout).toContain("https://github.com/mozart-ai/mozart/releases/download/v0.2.0/mozart-darwin-arm64");
    expect(pinned.stdout).toContain("https://github.com/mozart-ai/mozart/releases/download/v0.2.0/SHA256SUMS");
    expect(installed()).toEqual([]);
    expect(requests).toEqual([]);
  });

  test("MOZART_INSTALL_BASE points straight at a folder of assets", async () => {
    const r = await install([], { ...platformEnv("Linux", "x86_64"), MOZART_INSTALL_BASE: `${origin}/releases/download/v0.1.0/` });
    expect(r.code).toBe(0);
    expect(readFileSync(join(bin, "mozart"), "utf8")).toBe(fake("0.1.0", "linux-x64"));
  });

  test("a tampered binary is refused and nothing is installed, not even over an old copy", async () => {
    mkdirSync(bin);
    writeFileSync(join(bin, "mozart"), "old");
    const r = await install([], { ...platformEnv("Linux", "x86_64"), MOZART_INSTALL_BASE: `${origin}/tampered` });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("checksum mismatch for mozart-linux-x64");
    expect(r.stderr).toContain("nothing was installed");
    expect(installed()).toEqual(["mozart"]);
    expect(readFileSync(join(bin, "mozart"), "utf8")).toBe("old");
  });

  test("an asset missing from SHA256SUMS is an error, and the binary is never fetched", async () => {
    const r = await install([], { ...platformEnv("Linux", "x86_64"), MOZART_INSTALL_BASE: `${origin}/missing` });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("has no entry for mozart-linux-x64");
    expect(installed()).toEqual([]);
    expect(requests).toEqual(["/missing/SHA256SUMS"]);
  });

  test("a release that does not exist is a clear download error", async () => {
    const r = await install(["--version", "7.7.7"], platformEnv("Linux", "x86_64"));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("download failed");
    expect(r.stderr).toContain("/releases/download/v7.7.7/SHA256SUMS");
    expect(installed()).toEqual([]);
  });

  for (const [os, arch, what] of [
    ["SunOS", "x86_64", 'operating system "SunOS"'],
    ["Linux", "riscv64", 'architecture "riscv64"'],
    ["MINGW64_NT-10.0", "aarch64", "windows-arm64"],
  ] as const) {
    test(`unsupported platform ${os} ${arch} → error listing the supported ones`, async () => {
      const r = await install([], platformEnv(os, arch));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`no mozart build for ${what}`);
      for (const p of ASSETS) expect(r.stderr).toContain(p);
      expect(installed()).toEqual([]);
      expect(requests).toEqual([]);
    });
  }

  test("re-running is idempotent: up to date without a download, and a changed copy is replaced cleanly", async () => {
    const env = platformEnv("Linux", "x86_64");
    expect((await install([], env)).code).toBe(0);
    requests.length = 0;
    const again = await install([], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("already up to date");
    expect(requests).toEqual(["/releases/latest/download/SHA256SUMS"]);
    writeFileSync(join(bin, "mozart"), "an older mozart");
    chmodSync(join(bin, "mozart"), 0o700);
    const replaced = await install([], env);
    expect(replaced.code).toBe(0);
    expect(replaced.stdout).toContain(`installed ${join(bin, "mozart")}`);
    expect(installed()).toEqual(["mozart"]);
    expect(readFileSync(join(bin, "mozart"), "utf8")).toBe(fake("9.9.9", "linux-x64"));
    expect(statSync(join(bin, "mozart")).mode & 0o777).toBe(0o755);
  });

  test("prints a PATH hint only when the install folder is not on PATH", async () => {
    const env = platformEnv("Linux", "x86_64");
    const off = await install([], env);
    expect(off.stdout).toContain("is not on your PATH");
    expect(off.stdout).toContain(`export PATH="${bin}:$PATH"`);
    const on = await install([], { ...env, PATH: `/usr/bin:${bin}:/bin` });
    expect(on.code).toBe(0);
    expect(on.stdout).not.toContain("not on your PATH");
  });

  test("without MOZART_INSTALL_DIR it installs into ~/.local/bin", async () => {
    const r = await install([], { ...platformEnv("Linux", "x86_64"), MOZART_INSTALL_DIR: undefined });
    expect(r.code).toBe(0);
    expect(readFileSync(join(home, ".local", "bin", "mozart"), "utf8")).toBe(fake("9.9.9", "linux-x64"));
  });

  /** A PATH holding only the tools install.sh needs, plus the chosen downloaders. */
  function toolbox(downloaders: string[]): string {
    const dir = join(box.path, "tools");
    mkdirSync(dir);
    for (const tool of ["uname", "mkdir", "mktemp", "awk", "cut", "sha256sum", "chmod", "mv", "rm", "ls", "grep", "cat", ...downloaders]) {
      const real = Bun.which(tool, { PATH: "/usr/bin:/bin" });
      if (real) symlinkSync(real, join(dir, tool));
    }
    return dir;
  }

  test("uses wget when curl is missing", async () => {
    const r = await install([], { ...platformEnv("Linux", "x86_64"), PATH: toolbox(["wget"]) });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(readFileSync(join(bin, "mozart"), "utf8")).toBe(fake("9.9.9", "linux-x64"));
  });

  test("neither curl nor wget → a clear error", async () => {
    const r = await install([], { ...platformEnv("Linux", "x86_64"), PATH: toolbox([]) });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("neither curl nor wget was found");
    expect(installed()).toEqual([]);
  });

  test("--help lists the options and platforms; an unknown option is an error", async () => {
    const help = await install(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--version X");
    expect(help.stdout).toContain("MOZART_INSTALL_DIR");
    expect(help.stdout).toContain("linux-x64-musl");
    const bad = await install(["--versoin", "1"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("unknown option --versoin");
  });
});
