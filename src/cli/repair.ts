import { defineCommand } from "citty";
import { access } from "node:fs/promises";
import { checkJob } from "../config/check.ts";
import { loadJobFile } from "../config/load.ts";
import { EXIT, MozartError } from "../errors.ts";
import { newJobRecord } from "../engine/job.ts";
import { findJob, mozartHome } from "../state/registry.ts";
import { shellQuote } from "../text.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { locateJob, openLocated } from "./find-job.ts";
import { createOutput } from "./output.ts";

export default defineCommand({
  meta: {
    name: "repair",
    description: "Rebuild what can be rebuilt of a job's state: a missing or damaged job record (from the job file), unreadable batch records (reset to pending)",
  },
  args: {
    job: { type: "positional", required: true, description: "Job file (needed to rebuild a job record), or job id" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const where = await locateJob(args.job);
    const store = await openLocated(where);
    try {
      const id = where.id;
      const done: string[] = [];
      let record = await store.getJob(id).catch((e: Error) => {
        done.push(`the job record was damaged (${e.message.replace(/^state \(\w+\): /, "")})`);
        return null;
      });
      if (!record) {
        const file = where.file ?? (await findJob(mozartHome(process.env), id).catch(() => null))?.config_path;
        if (!file || !(await access(file).then(() => true, () => false))) {
          throw new MozartError(`the job record of "${id}" is missing or damaged, and rebuilding it needs the job file`, { hint: "mozart repair <job file>" });
        }
        const job = await checkJob(await loadJobFile(file));
        if (job.config.name !== id) throw new MozartError(`${file} names job "${job.config.name}", not "${id}"`, { exitCode: EXIT.usage });
        record = { ...(await newJobRecord(job, store, Date.now())), status: "paused" };
        await store.putJob(record);
        done.push(`rebuilt the job record from ${file}`);
      }
      const reset = await store.resetBatches(id, { damaged: true });
      if (reset) done.push(`${reset} unreadable batch record${reset === 1 ? " was" : "s were"} reset to pending: ${reset === 1 ? "that batch runs" : "those batches run"} again on resume`);
      if (out.json) out.emit({ job_id: id, repaired: done });
      else if (!done.length) out.print(`job ${out.c.bold(id)}: nothing to repair`);
      else {
        for (const d of done) out.print(`${out.c.green("✓")} ${d}`);
        out.info(out.c.dim(`continue with: mozart resume ${shellQuote(id)}`));
      }
      return EXIT.ok;
    } finally {
      await store.close();
    }
  },
});
