import { defineCommand } from "citty";
import { EXIT, MozartError } from "../errors.ts";
import { accountHoldView, jobAccountHold, type AccountHold } from "../state/accounts.ts";
import { mozartHome } from "../state/registry.ts";
import { batchRow, batchRows, jobReport } from "../state/report.ts";
import type { JobRecord, StateStore } from "../state/types.ts";
import { sleep } from "../time.ts";
import { batchNumber, globalArgs, jsonArg } from "./args.ts";
import { openJob } from "./find-job.ts";
import { writeJsonWithArray } from "./json-stream.ts";
import { createOutput, writeStdout, type Output } from "./output.ts";
import { printAttempts, printBatchDetails, printBatchTable, printReport } from "./status-view.ts";

/** Without --all, a job of many batches shows this many rows. */
const SHOWN_ROWS = 60;

export default defineCommand({
  meta: { name: "status", description: "Show a job's progress, per-batch status, attempts, errors, cost and timing" },
  args: {
    job: { type: "positional", required: true, description: "Job id (its name) or job file" },
    watch: { type: "boolean", alias: "w", description: "Redraw whenever the job records something, until it stops running (Ctrl+C to leave)" },
    all: { type: "boolean", description: "List every batch, pending ones included" },
    batch: { type: "string", alias: "b", description: "Show batch N's attempt log: each attempt's mode, command, exit code, decision and output (-v adds prompts)", valueHint: "N" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    // Flags first: `--batch abc` is a usage error whether or not the job exists.
    const batchNum = batchNumber(args.batch);
    const { store, record } = await openJob(args.job, { readOnly: true });
    try {
      if (batchNum !== undefined) {
        if (batchNum < 1 || batchNum > record.total_batches) {
          throw new MozartError(`--batch ${args.batch} is out of range: the job has ${record.total_batches} batches`, { exitCode: EXIT.usage });
        }
        const attempts = await Promise.all((await store.listAttempts(record.job_id, batchNum)).map(async (a) => ({ ...a, prompt: await store.getBlob(a.prompt_blob) })));
        if (out.json) out.emit({ job_id: record.job_id, batch_num: batchNum, attempts });
        else printAttempts(out, batchNum, attempts);
        return EXIT.ok;
      }
      if (out.json) {
        const rec = (await store.getJob(record.job_id)) ?? record;
        const held = await accountHoldOf(store, rec);
        await writeJsonWithArray({ ...(await jobReport(store, rec)), account_hold: held ? accountHoldView(held) : null }, "batches", batchRows(store, rec));
        return EXIT.ok;
      }
      if (!args.watch) {
        await show(out, store, record, args.all);
        return EXIT.ok;
      }
      return await watch(out, store, record, args.all);
    } finally {
      await store.close();
    }
  },
});

async function show(out: Output, store: StateStore, record: JobRecord, all?: boolean): Promise<string> {
  const rec = (await store.getJob(record.job_id)) ?? record;
  const report = await jobReport(store, rec);
  printReport(out, report, await accountHoldOf(store, rec));
  out.print();
  const total = rec.total_batches;
  if (all || total <= 30) {
    // A page at a time: a million batches print in bounded memory.
    let page = [];
    const shown = [];
    for await (const row of batchRows(store, rec)) {
      page.push(row);
      if (row.status === "failed" || row.status === "conflict" || row.git?.merge === "branch" || row.git?.kept_branch || row.permission_denials.length || row.damaged) shown.push(row);
      if (page.length === 1000) {
        printBatchTable(out, page);
        page = [];
      }
    }
    if (page.length) printBatchTable(out, page);
    printBatchDetails(out, shown.slice(0, 10));
  } else {
    const live = new Set(report.runners.map((r) => r.id));
    const recorded = (await store.listBatches(rec.job_id, { limit: SHOWN_ROWS })).map((b) => batchRow(b, live));
    const rows = [];
    for await (const row of batchRows(store, rec, { to: 3 })) if (!recorded.some((r) => r.batch_num === row.batch_num)) rows.push(row);
    rows.push(...recorded);
    rows.sort((a, b) => a.batch_num - b.batch_num);
    printBatchTable(out, rows);
    const more = total - rows.length;
    if (more > 0) out.print(out.c.dim(`  … ${more} more batches (${report.progress.pending} pending); --all shows every batch`));
    printBatchDetails(out, rows);
  }
  return report.status;
}

/** The quota guard: the hold on the account the job's claude sessions run on. */
function accountHoldOf(store: StateStore, record: JobRecord): Promise<AccountHold | null> {
  return jobAccountHold({ home: mozartHome(process.env), store, record, env: process.env, now: Date.now() });
}

/** Redraws when the event log moves on; leaves when the job is no longer running. */
async function watch(out: Output, store: StateStore, record: JobRecord, all?: boolean): Promise<number> {
  const stop = new AbortController();
  const onInt = () => stop.abort();
  process.once("SIGINT", onInt);
  const live = process.stdout.isTTY;
  try {
    for (;;) {
      if (live) writeStdout("\x1b[H\x1b[2J");
      const status = await show(out, store, record, all);
      if (status !== "running") return EXIT.ok;
      // Redraw as soon as something is recorded, and every 2 s regardless (elapsed time, a runner that died).
      const seq = await store.lastSeq(record.job_id);
      for (let i = 0; i < 8 && !stop.signal.aborted && (await store.lastSeq(record.job_id)) === seq; i++) {
        if (!(await sleep(250, stop.signal))) break;
      }
      if (stop.signal.aborted) return EXIT.ok;
      if (!live) out.print();
    }
  } finally {
    process.off("SIGINT", onInt);
  }
}
