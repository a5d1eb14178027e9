/**
 * Prepares the files of a release in dist/: every binary, SHA256SUMS, install.sh and
 * RELEASE_NOTES.md (this version's CHANGELOG.md section). Upload dist/* as the release assets:
 * install.sh expects the binaries and SHA256SUMS side by side under one URL.
 *
 *   bun run release            build everything
 *   bun run release --notes    only check CHANGELOG.md and print the notes (no build)
 */
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { build, DIST, ROOT, TARGETS } from "./build.ts";

const REPO = "https://github.com/mozart-ai/mozart";

/**
 * The body of `## [version]` (Keep a Changelog) up to the next `## ` heading or the link
 * references at the bottom. Throws when the section is missing or empty, so a release can never
 * ship without notes.
 */
export function releaseNotes(changelog: string, version: string): string {
  const lines = changelog.split(/\r?\n/);
  const escaped = version.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const heading = new RegExp(`^## \\[?v?${escaped}\\]?(\\s|$)`);
  const start = lines.findIndex((l) => heading.test(l));
  if (start < 0) throw new Error(`CHANGELOG.md has no "## [${version}] - YYYY-MM-DD" section; add one before releasing`);
  const body: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^## /.test(line) || /^\[[^\]]+\]:\s/.test(line)) break;
    body.push(line);
  }
  const text = body.join("\n").trim();
  if (!text) throw new Error(`the CHANGELOG.md section for ${version} is empty`);
  return text;
}

function notesDocument(version: string, section: string): string {
  return `# Mozart ${version}

${section}

## Install

\`\`\`sh
curl -fsSL ${REPO}/releases/download/v${version}/install.sh | sh -s -- --version ${version}
\`\`\`

Or download the binary for your platform below and check it with \`sha256sum -c SHA256SUMS --ignore-missing\`.
`;
}

async function main(argv: string[]): Promise<void> {
  const version = pkg.version;
  // Checked before the build: a missing changelog entry should fail in a second, not after 100 MB × 6.
  const section = releaseNotes(readFileSync(join(ROOT, "CHANGELOG.md"), "utf8"), version);
  if (argv.includes("--notes")) {
    process.stdout.write(`${notesDocument(version, section)}`);
    return;
  }
  // Start from an empty dist/ so no stale asset from an earlier build is uploaded by mistake.
  rmSync(DIST, { recursive: true, force: true });
  mkdirSync(DIST, { recursive: true });
  await build(TARGETS, DIST);
  copyFileSync(join(ROOT, "scripts", "install.sh"), join(DIST, "install.sh"));
  chmodSync(join(DIST, "install.sh"), 0o755);
  writeFileSync(join(DIST, "RELEASE_NOTES.md"), notesDocument(version, section));
  console.log(`release ${version} ready in dist/: ${TARGETS.length} binaries, SHA256SUMS, install.sh, RELEASE_NOTES.md`);
}

if (import.meta.main) {
  try {
    await main(process.argv.slice(2));
  } catch (err) {
    console.error(`release: ${(err as Error).message}`);
    process.exit(1);
  }
}
