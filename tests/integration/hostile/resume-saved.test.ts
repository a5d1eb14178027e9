/**
 * What a resume has to do without: a template_file deleted after the job started (the saved
 * copy is used, and says so); a job id with spaces and quotes (every hint is a command that can
 * be pasted into a shell as it is); a TZ that is not an IANA zone (a warning, not a silent UTC).
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS, readText, statusOf } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

/** The words a POSIX shell makes of `text`. */
function shellWords(text: string): string[] {
  const r = spawnSync("sh", ["-c", `for w in ${text}; do printf '%s\\0' "$w"; done`], { encoding: "utf8" });
  return r.stdout.split("\0").slice(0, -1);
}

for (const kind of KINDS) {
  describe(`resume without its inputs (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    test("a deleted template_file: resume uses the saved template, says so, and sends the same prompts", () => {
      box = sandbox(kind);
      writeFileSync(join(box.dir, "prompt.txt"), "Template text for batch {{ batch_num }} (items {{ start_item }}-{{ end_item }})\n");
      const file = box.job({
        name: "tpl",
        batch: { size: 2, total_items: 6 },
        prompt: { template_file: "prompt.txt" },
        retry: { max_retries: 0, base_delay_seconds: 0.05, max_delay_seconds: 0.1 },
        backend: { type: "command", command: "cat > {job_dir}/prompt-$MOZART_BATCH_NUM.txt; [ $MOZART_BATCH_NUM -lt 2 ] || [ -f {job_dir}/fixed ]", timeout_seconds: 20 },
      });
      expect(box.run(["run", file]).code).toBe(1);
      rmSync(join(box.dir, "prompt.txt"));
      writeFileSync(join(box.dir, "fixed"), "");
      const r = box.run(["resume", "tpl"]);
      expect(r.stderr).toContain("is gone; using the copy saved in the job state");
      expect(r.code).toBe(0);
      expect(readText(join(box.dir, "prompt-3.txt"))).toBe("Template text for batch 3 (items 5-6)\n");
      expect(readText(join(box.dir, "prompt-2.txt"))).toBe("Template text for batch 2 (items 3-4)\n");
      expect(statusOf(box, "tpl").doc!.status).toBe("completed");
    });

    test("a job id with spaces and quotes is shell-quoted in every hint", () => {
      box = sandbox(kind);
      const id = `it's "my" job $x \\ ok`;
      const file = box.job(
        { name: id, batch: { size: 1, total_items: 2 }, retry: { max_retries: 0, base_delay_seconds: 0.05, max_delay_seconds: 0.1 }, backend: { type: "command", command: "exit 1", timeout_seconds: 20 } },
        "my job's file.yaml",
      );
      const r = box.run(["run", file]);
      expect(r.code).toBe(1);
      const hints = (r.stdout + r.stderr).split("\n").filter((l) => /mozart (resume|status|logs|repair) /.test(l));
      expect(hints.length).toBeGreaterThanOrEqual(2);
      for (const line of hints) {
        const cmd = line.slice(line.indexOf("mozart "));
        const words = shellWords(cmd);
        expect(words[0]).toBe("mozart");
        expect(words[2]).toBe(id);
      }
      // The pasted command works.
      const s = box.run(["status", id, "--json"]);
      expect(s.code).toBe(0);
      expect((JSON.parse(s.stdout) as { job_id: string }).job_id).toBe(id);
    });
  });
}

describe("a TZ that is not an IANA zone", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("run warns and names it; an IANA zone and :/etc/localtime do not", () => {
    box = sandbox("sqlite");
    const file = box.job({ name: "tz", batch: { size: 1, total_items: 1 }, backend: { type: "command", command: "true", timeout_seconds: 20 } });
    const bad = box.run(["run", file], { TZ: "Mars/Olympus_Mons" });
    expect(bad.code).toBe(0);
    expect(bad.stderr).toContain("TZ=Mars/Olympus_Mons is not a known IANA time zone");
    for (const tz of ["Europe/Lisbon", ":/etc/localtime", "UTC"]) {
      const ok = box.run(["resume", "tz", "--force"], { TZ: tz });
      expect(ok.code).toBe(0);
      expect(ok.stderr).not.toContain("IANA");
    }
  });
});
