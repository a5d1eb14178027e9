/**
 * Hostile placeholder values. A job folder and workspace with a space in their paths run the
 * offline quickstart; variable values that are shell syntax (`$(touch pwned)`, `'; touch pwned2; '`,
 * a lone `"`, backquotes) reach backend.command and command_succeeds as literal text wherever the
 * placeholder stands (unquoted, in '…', in "…") and never run as commands.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { mozart, ROOT, tempDir } from "../../helpers.ts";
import { KINDS } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

const VALUES = {
  a: "$(touch pwned)",
  b: "'; touch pwned2; '",
  c: '"',
  d: "`touch pwned3` $HOME \\ & ; | > out",
  e: "x; touch pwned4",
  f: ") ; touch pwned5 ; (",
};
const PWNED = ["pwned", "pwned2", "pwned3", "pwned4", "pwned5", "out"];

/**
 * Every value in every position, in both placeholder spellings: bare, in '…', in "…", and inside
 * command substitutions ($(…) and backquotes, bare and within "…"), where quoting starts afresh.
 */
function printfOf(target: string): string {
  const args: string[] = [];
  for (const k of Object.keys(VALUES)) {
    args.push(`{${k}}`, `'{${k}}'`, `"{{ ${k} }}"`, `"$(printf '%s' {${k}})"`, `"\`printf '%s' {${k}}\`"`, `"$(printf '%s' "{${k}}")"`, `"$( (printf '%s' '{${k}}') )"`);
  }
  return `x=$(printf '%s' {e}); y=\`printf '%s' {f}\`; printf '%s\\n' "$x" "$y" ${args.join(" ")} > ${target}`;
}
const EXPECTED = [VALUES.e, VALUES.f, ...Object.values(VALUES).flatMap((v) => [v, v, v, v, v, v, v])];

describe("hostile placeholder values", () => {
  let t: ReturnType<typeof tempDir>;
  afterEach(() => t?.cleanup());

  for (const kind of KINDS) {
    test(`the quickstart runs in a folder named "my jobs", workspace "my work" (${kind})`, () => {
      t = tempDir("mozart test ");
      const dir = join(t.path, "my jobs");
      mkdirSync(dir);
      cpSync(join(ROOT, "examples", "scripts"), join(dir, "scripts"), { recursive: true });
      const text = readFileSync(join(ROOT, "examples", "quickstart.yaml"), "utf8").replace("workspace: ./workspace", `workspace: "./my work"\nstate_backend: ${kind}`);
      writeFileSync(join(dir, "quickstart.yaml"), text);
      const env = { MOZART_HOME: join(t.path, "home") };
      const r = mozart(["run", join(dir, "quickstart.yaml")], { cwd: t.path, env });
      expect(r.stderr).not.toContain("No such file");
      expect(r.code).toBe(0);
      for (const n of [1, 2, 3]) expect(existsSync(join(dir, "my work", "output", `batch${n}-result.md`))).toBe(true);
      const s = mozart(["status", "quickstart", "--json"], { cwd: t.path, env });
      expect((JSON.parse(s.stdout) as { status: string }).status).toBe("completed");
    });
  }

  test("shell syntax in prompt.variables reaches backend.command and command_succeeds as literal text", () => {
    t = tempDir("mozart test ");
    const dir = join(t.path, "job 'dir'");
    mkdirSync(dir);
    const file = join(dir, "job.yaml");
    writeFileSync(
      file,
      stringify({
        name: "hostile-vars",
        workspace: "./ws",
        pause_between_batches_seconds: 0,
        batch: { size: 1, total_items: 1 },
        prompt: { template: "x", variables: VALUES },
        retry: { max_retries: 0 },
        backend: { type: "command", command: printfOf("{job_dir}/backend-args.txt") },
        validations: [{ type: "command_succeeds", command: printfOf("{{ job_dir }}/validation-args.txt") }],
      }),
    );
    const env = { MOZART_HOME: join(t.path, "home") };
    const dry = mozart(["run", file, "--dry-run"], { cwd: t.path, env });
    expect(dry.code).toBe(0);
    const r = mozart(["run", file], { cwd: t.path, env });
    expect(r.code).toBe(0);
    for (const name of ["backend-args.txt", "validation-args.txt"]) {
      const lines = readFileSync(join(dir, name), "utf8").split("\n").slice(0, -1);
      expect(lines).toEqual(EXPECTED);
    }
    for (const where of [dir, join(dir, "ws"), t.path]) for (const f of PWNED) expect(existsSync(join(where, f))).toBe(false);
  });
});
