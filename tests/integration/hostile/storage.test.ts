/**
 * Storage stays proportionate: 10 batches with a 10 MB prompt (a large prompt.variables value),
 * each retried once, keep the whole state under 30 MB (about 22 MB here: 200 MB of prompts sent,
 * every distinct text stored once and gzipped); and the job record is neither inflated by the
 * prompt nor rewritten per batch.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { statSync } from "node:fs";
import { Database } from "bun:sqlite";
import { commandBackend, sandbox, type Sandbox } from "../engine-helpers.ts";
import { folderBytes, jsonJobFile, KINDS, mulberry32, sqliteFile, stateDir, statusOf } from "./hostile-helpers.ts";

setDefaultTimeout(120_000);

/** ~10 MB of text that reads like a work list: compressible as real prompts are, not a single repeated byte. */
function bigText(): string {
  const random = mulberry32(29);
  const words = ["review", "the", "invoice", "record", "for", "customer", "account", "check", "totals", "and", "dates", "flag", "anything", "odd", "report", "item"];
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < 10 * 1024 * 1024; i++) {
    const n = 6 + Math.floor(random() * 8);
    const line = `item ${i}: ${Array.from({ length: n }, () => words[Math.floor(random() * words.length)]).join(" ")}`;
    lines.push(line);
    size += line.length + 1;
  }
  return lines.join("\n");
}

for (const kind of KINDS) {
  describe(`storage (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    test("10 batches of a 10 MB prompt, retried: state under 30 MB, job record small and not rewritten per batch", async () => {
      box = sandbox(kind);
      const big = bigText();
      const file = box.job({
        name: "big",
        batch: { size: 1, total_items: 10 },
        prompt: { template: "{{ notes }}\nNow batch {{ batch_num }}.\n", variables: { notes: big } },
        // Every batch fails its first attempt: the retry sends the same prompt, which is not stored again.
        backend: commandBackend("wc -c > {job_dir}/size-$MOZART_BATCH_NUM; sleep 0.1; [ -f {job_dir}/m-$MOZART_BATCH_NUM ] || { touch {job_dir}/m-$MOZART_BATCH_NUM; exit 1; }"),
      });
      const p = box.start(["run", file]);
      // Watch the job record while the batches run: it may change at the start and the end only.
      const seen = new Set<string>();
      const jobStamp = () => {
        try {
          if (kind === "json") return String(statSync(jsonJobFile(box, "big")).mtimeMs);
          const db = new Database(sqliteFile(box), { readonly: true });
          try {
            return String((db.query("SELECT data FROM jobs WHERE job = 'big'").get() as { data: string } | null)?.data ?? "");
          } finally {
            db.close();
          }
        } catch {
          return "";
        }
      };
      let done = false;
      void p.done.then(() => (done = true));
      while (!done) {
        const s = jobStamp();
        if (s) seen.add(s);
        await Bun.sleep(50);
      }
      const r = await p.done;
      expect(r.code).toBe(0);
      const s = jobStamp();
      if (s) seen.add(s);
      // created, set running, completed: a few versions, not one per batch.
      expect(seen.size).toBeLessThanOrEqual(4);

      const doc = statusOf(box, "big").doc!;
      expect(doc.status).toBe("completed");
      const bytes = folderBytes(stateDir(box));
      // 20 attempts of 10 distinct 10 MB prompts (200 MB sent): each prompt stored once, gzipped.
      expect(doc.batches.every((b) => b.attempts === 2)).toBe(true);
      expect(bytes).toBeLessThan(30 * 1024 * 1024);
      // The prompt is not inlined in the job record.
      const record = kind === "json" ? statSync(jsonJobFile(box, "big")).size : (jobStamp().length);
      expect(record).toBeLessThan(64 * 1024);
    });
  });
}
