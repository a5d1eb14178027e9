/**
 * The whole test suite: `bun test` with its normal output, then one line CI can read,
 * "N passed, N failed", from the real counts. Exits non-zero on any failure.
 */
import { spawn } from "node:child_process";

const child = spawn(process.execPath, ["test", "--timeout=60000", ...process.argv.slice(2)], { stdio: ["ignore", "pipe", "pipe"], env: process.env });
let text = "";
child.stdout.on("data", (d: Buffer) => {
  process.stdout.write(d);
  text += d.toString();
});
child.stderr.on("data", (d: Buffer) => {
  process.stderr.write(d);
  text += d.toString();
});
const code: number = await new Promise((res) => child.on("close", (c) => res(c ?? 1)));
const count = (word: string) => {
  const all = [...text.matchAll(new RegExp(`^\\s*(\\d+) ${word}$`, "gm"))];
  return all.length ? Number(all[all.length - 1]![1]) : undefined;
};
const passed = count("pass") ?? 0;
let failed = count("fail") ?? 0;
// A crash before the summary, or a non-zero exit with no counted failure, is still a failure.
if (code !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || code !== 0 ? 1 : 0);
