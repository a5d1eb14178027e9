#!/usr/bin/env bun
/**
 * The `mozart` entry. `--version` is answered here, before the command-line machinery loads,
 * so it costs little more than starting the runtime; everything else goes to cli/root.ts.
 */
import { COMMIT, VERSION, versionLine } from "./version.ts";

const argv = process.argv.slice(2);
const end = argv.indexOf("--");
const flags = end < 0 ? argv : argv.slice(0, end);

if (flags.includes("-V") || flags.includes("--version")) {
  const json = flags.includes("--json") || flags.includes("-j");
  // console.log, not process.stdout: initialising Node's stream machinery would triple the cost.
  console.log(json ? JSON.stringify({ name: "mozart", version: VERSION, commit: COMMIT ?? null }, null, 2) : versionLine());
} else {
  const { cli } = await import("./cli/root.ts");
  const { stdoutFlushed } = await import("./cli/output.ts");
  const code = await cli(argv);
  // Exit explicitly (a lingering handle must not keep a finished command alive), once stdout is out.
  await stdoutFlushed();
  process.exit(code);
}
