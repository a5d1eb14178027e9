import { defineCommand } from "citty";
import { EXIT, MozartError } from "../errors.ts";
import { sleep } from "../engine/shutdown.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { openJob } from "./find-job.ts";
import { createOutput, writeStdout } from "./output.ts";
import { effectiveStatus, printAttempts, printStatus, statusJson } from "./status-view.ts";

export default defineCommand({
  meta: { name: "status", description: "Show a job's progress, per-batch status, attempts, errors, cost and timing" },
  args: {
    job: { type: "positional", required: true, description: "Job id (its name) or job file" },
    watch: { type: "boolean", alias: "w", description: "Refresh every second until the job stops running (Ctrl+C to leave)" },
    all: { type: "boolean", description: "List every batch, pending ones included" },
    batch: { type: "string", alias: "b", description: "Show batch N's attempt log: each attempt's mode, command, exit code, decision and output (-v adds prompts)", valueHint: "N" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const { store, record } = await openJob(args.job);
    try {
      if (args.batch !== undefined) {
        const n = Number(args.batch);
        if (!Number.isInteger(n) || n < 1 || n > record.total_batches) {
          throw new MozartError(`--batch ${args.batch} is out of range: the job has ${record.total_batches} batches`, { exitCode: EXIT.usage });
        }
        const attempts = await store.listAttempts(record.job_id, n);
        if (out.json) return out.emit({ job_id: record.job_id, batch_num: n, attempts });
        printAttempts(out, n, attempts);
        return;
      }
      const show = async () => {
        const rec = (await store.getJob(record.job_id)) ?? record;
        const batches = await store.listBatches(rec.job_id);
        if (out.json) out.emit(statusJson(rec, batches));
        else printStatus(out, rec, batches, { all: args.all });
        return rec;
      };
      if (!args.watch || out.json) {
        await show();
        return;
      }
      const stop = new AbortController();
      const onInt = () => stop.abort();
      process.once("SIGINT", onInt);
      const live = process.stdout.isTTY;
      for (;;) {
        if (live) writeStdout("\x1b[H\x1b[2J");
        const rec = await show();
        if (effectiveStatus(rec) !== "running" || !(await sleep(1000, stop.signal))) break;
        if (!live) out.print();
      }
      process.off("SIGINT", onInt);
    } finally {
      await store.close();
    }
  },
});
