/**
 * Terminal control sequences in a backend's output (window title, clear screen, cursor moves,
 * hyperlinks, C1 controls, a bell) never reach the terminal through run, status or logs, with
 * colour on (FORCE_COLOR=1, as on a TTY): the only escape sequences left are our own SGR colours.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

const HOSTILE = String.raw`printf 'A\033]0;pwned-title\007B\033[2JC\033[HD\033[5AE\033[KF\033]8;;http://evil.example\033\\link\033]8;;\033\\G\302\2332JH\033PdcsI\033\\J\007K\033cL\n'`;

/** Fails unless the only escape sequences in `text` are SGR colours (ESC [ digits ; m). */
function onlyColours(text: string, where: string): void {
  const rest = text.replace(/\x1b\[[0-9;]*m/g, "");
  const bad = /[\x1b\x07\x9b\x90\x9d]/.exec(rest);
  if (bad) throw new Error(`${where} has a control character ${JSON.stringify(bad[0])} at …${JSON.stringify(rest.slice(Math.max(0, bad.index - 30), bad.index + 30))}…`);
}

for (const kind of KINDS) {
  describe(`backend output cannot drive the terminal (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    test("run -v, status, status --batch, logs: only SGR colours remain", () => {
      box = sandbox(kind);
      const file = box.job({
        name: "esc",
        batch: { size: 1, total_items: 1 },
        retry: { max_retries: 0, base_delay_seconds: 0.05, max_delay_seconds: 0.1 },
        backend: { type: "command", command: `${HOSTILE}; ${HOSTILE} >&2; exit 1`, timeout_seconds: 20 },
      });
      const env = { FORCE_COLOR: "1" };
      const runs = [box.run(["run", file, "-v"], env), box.run(["status", "esc"], env), box.run(["status", "esc", "--batch", "1", "-v"], env), box.run(["logs", "esc"], env), box.run(["resume", "esc", "-v"], env)];
      // Colour is really on, and the backend's text really arrived (without its controls).
      expect(runs[0]!.stdout + runs[0]!.stderr).toMatch(/\x1b\[[0-9;]*m/);
      expect(runs[3]!.stdout).toContain("pwned-title");
      for (const [i, r] of runs.entries()) {
        onlyColours(r.stdout, `stdout of command ${i}`);
        onlyColours(r.stderr, `stderr of command ${i}`);
      }
      // Machine output keeps the text as it was: JSON escapes it.
      const j = box.run(["logs", "esc", "--json"], env);
      expect(j.stdout).toContain("\\u001b]0;pwned-title\\u0007");
    });
  });
}
