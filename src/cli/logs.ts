import { defineCommand } from "citty";
import { EXIT, MozartError } from "../errors.ts";
import { FINAL_EVENTS, type StoredEvent } from "../state/events.ts";
import { effectiveStatus } from "../state/report.ts";
import type { JobRecord, StateStore } from "../state/types.ts";
import { clean, formatTokens, formatUsd } from "../text.ts";
import { formatDuration, formatTime, sleep } from "../time.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { openJob } from "./find-job.ts";
import { createOutput, stdoutFlushed, writeStdout, type Output } from "./output.ts";
import { describeActivity } from "./progress.ts";
import { describeRequester } from "./status-view.ts";

const PAGE = 1000;
const POLL_MS = 200;

export default defineCommand({
  meta: { name: "logs", description: "Print a job's events and attempt output, from any terminal; -f follows a running job until it ends" },
  args: {
    job: { type: "positional", required: true, description: "Job id (its name) or job file" },
    follow: { type: "boolean", alias: "f", description: "Keep printing new events and output until the job stops running" },
    batch: { type: "string", alias: "b", description: "Only the events and output of batch N", valueHint: "N" },
    since: { type: "string", description: "Only events after this seq (each event's number; --json shows it)", valueHint: "SEQ" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const batch = args.batch === undefined ? undefined : Number(args.batch);
    if (args.batch !== undefined && (!Number.isInteger(batch) || batch! < 1)) throw new MozartError(`--batch expects a batch number, got "${args.batch}"`, { exitCode: EXIT.usage });
    const since = args.since === undefined ? 0 : Number(args.since);
    if (!Number.isInteger(since) || since < 0) throw new MozartError(`--since expects an event seq (a whole number), got "${args.since}"`, { exitCode: EXIT.usage });
    const { store, record } = await openJob(args.job, { readOnly: true });
    try {
      await follow(out, store, record, { after: since, batch, follow: Boolean(args.follow) });
      return EXIT.ok;
    } finally {
      await store.close();
    }
  },
});

/** Prints events after `after`; with follow, keeps polling until the job has stopped and nothing more is recorded. */
async function follow(out: Output, store: StateStore, record: JobRecord, o: { after: number; batch?: number; follow: boolean }): Promise<void> {
  let after = o.after;
  const stop = new AbortController();
  const onInt = () => stop.abort();
  if (o.follow) process.once("SIGINT", onInt);
  try {
    for (;;) {
      const page = await store.readEvents(record.job_id, { after, limit: PAGE });
      for (const e of page) {
        after = e.seq;
        if (o.batch !== undefined && "batch_num" in e && e.batch_num !== o.batch) continue;
        if (o.batch !== undefined && !("batch_num" in e) && !FINAL_EVENTS.has(e.type)) continue;
        print(out, e);
      }
      if (page.length) await stdoutFlushed();
      if (page.length === PAGE) continue;
      if (!o.follow || stop.signal.aborted) return;
      if (!(await running(store, record)) && (await store.lastSeq(record.job_id)) <= after) return;
      if (!(await sleep(POLL_MS, stop.signal))) return;
    }
  } finally {
    process.off("SIGINT", onInt);
  }
}

async function running(store: StateStore, record: JobRecord): Promise<boolean> {
  const now = Date.now();
  const rec = (await store.getJob(record.job_id)) ?? record;
  const [summary, live] = await Promise.all([store.summary(rec.job_id, rec.total_batches), store.runners(rec.job_id, now)]);
  return effectiveStatus(rec, summary, live) === "running";
}

function print(out: Output, e: StoredEvent): void {
  if (out.json) {
    writeStdout(`${JSON.stringify(e)}\n`);
    return;
  }
  if (e.type === "output") {
    // Output arrives in chunks, not lines: print it as it came, marked with its batch.
    const text = clean(e.text);
    const mark = out.c.dim(`${e.batch_num}${e.stream === "stderr" ? "!" : "│"} `);
    writeStdout(text.replace(/^(?=.)/gm, mark) + (text.endsWith("\n") ? "" : "\n"));
    return;
  }
  const line = describe(e);
  if (line) writeStdout(`${out.c.dim(`${formatTime(Date.parse(e.at))} #${e.seq}`)} ${line}\n`);
}

/** One line per event, in the words of the progress output. */
export function describe(e: StoredEvent): string | undefined {
  switch (e.type) {
    case "job_start":
      return `${e.mode === "join" ? "runner joined" : e.resumed ? "continuing" : "starting"}: ${e.to_run} of ${e.total_batches} batches to run, ${e.concurrency} at a time (runner ${e.runner})${e.cost_usd ? `; cost so far ${formatUsd(e.cost_usd)}` : ""}${e.budget_usd !== undefined ? `, budget ${formatUsd(e.budget_usd)}` : ""}`;
    case "batch_start":
      return `batch ${e.batch_num} started (items ${e.start_item}–${e.end_item})`;
    case "attempt_start":
      return `batch ${e.batch_num} attempt ${e.attempt} (${e.mode}): ${e.argv.join(" ")}`;
    case "attempt_end": {
      const v = e.validations ? `, validations ${e.validations.passed}/${e.validations.total}` : "";
      const retry = e.retry_in_ms !== undefined ? `; next try in ${formatDuration(e.retry_in_ms)}` : "";
      const tokens = e.tokens ? `, ${formatTokens(e.tokens.input + e.tokens.cache_read + e.tokens.cache_write_5m + e.tokens.cache_write_1h)} in${e.tokens.cache_read ? ` (${formatTokens(e.tokens.cache_read)} cached)` : ""}/${formatTokens(e.tokens.output)} out` : "";
      return `batch ${e.batch_num} attempt ${e.attempt}: ${e.decision}${e.reason ? ` — ${clean(e.reason)}` : ""}${v} (${formatDuration(e.duration_ms)}${e.cost_usd ? `, ${formatUsd(e.cost_usd)}` : ""}${tokens})${retry}`;
    }
    case "batch_complete":
      return `✓ batch ${e.batch_num} completed (${e.attempts} attempt${e.attempts === 1 ? "" : "s"}, ${formatDuration(e.duration_ms)}${e.cost_usd ? `, ${formatUsd(e.cost_usd)}` : ""})${e.job_cost_usd ? `; job so far ${formatUsd(e.job_cost_usd)}` : ""}`;
    case "batch_failed":
      return `✗ batch ${e.batch_num} failed: ${clean(e.error.message)}`;
    case "batch_released":
      return `batch ${e.batch_num} handed back (${e.reason}): it runs again on resume`;
    case "batch_merged":
      return `⇢ batch ${e.batch_num} ${e.already ? "was already on" : "landed on"} ${clean(e.target)} (${e.strategy}, ${e.commit.slice(0, 12)})`;
    case "batch_conflict":
      return `✗ batch ${e.batch_num} could not be merged: ${clean(e.message)}${e.resolve.length ? ` — to resolve: ${e.resolve.map(clean).join(" ; ")}` : ""}`;
    case "leftovers_stopped":
      return `batch ${e.batch_num}: stopped ${e.pids.length} process(es) left by runner ${e.from_runner}`;
    case "activity": {
      const text = describeActivity(e);
      return text ? `batch ${e.batch_num} attempt ${e.attempt}: ${clean(text)}` : undefined;
    }
    case "output_truncated":
      return `batch ${e.batch_num} attempt ${e.attempt}: more output than the log keeps (${e.logged_chars} chars); all of it is in ${e.file}`;
    case "rate_limit_hold":
      return `rate limit on batch ${e.batch_num}: holding all work until ${formatTime(e.until)} — ${clean(e.reason)}`;
    case "hold_end":
      return "hold over: resuming work";
    case "control":
      return `${e.request} requested by ${describeRequester(e.by)}`;
    case "runner_lost":
      return `runner ${e.runner} lost its lease: ${e.reason}`;
    case "runner_left":
      return e.others ? `runner ${e.runner} finished; ${e.others} still running` : `runner ${e.runner} left; the job waits for the next runner`;
    case "job_submitted":
      return `job submitted: ${e.total_batches - e.completed} of ${e.total_batches} batches wait for workers`;
    case "job_paused":
      return `⏸ job paused: ${e.completed}/${e.total_batches} batches completed (${e.reason})${e.cost_usd && !e.budget ? `, ${formatUsd(e.cost_usd)}` : ""}`;
    case "remote_batch": {
      const c = e.counts;
      const done = c ? (c.succeeded ?? 0) + (c.errored ?? 0) + (c.canceled ?? 0) + (c.expired ?? 0) : 0;
      const detail = c ? `: ${done}/${e.requests} done${c.errored ? `, ${c.errored} errored` : ""}${c.expired ? `, ${c.expired} expired` : ""}${c.canceled ? `, ${c.canceled} canceled` : ""}` : `: ${e.requests} requests`;
      return `Message Batch ${e.id ?? e.key} ${e.status}${detail}${e.error ? ` (${clean(e.error)})` : ""}`;
    }
    case "job_cancelled":
      return `■ job cancelled${e.by ? ` by ${describeRequester(e.by)}` : ""}: ${e.completed}/${e.total_batches} batches completed`;
    case "job_complete":
      return `✓ job completed: ${e.completed}/${e.total_batches} batches in ${formatDuration(e.duration_ms)}${e.cost_usd ? `, ${formatUsd(e.cost_usd)}` : ""}`;
    case "job_failed":
      return `✗ job failed: ${clean(e.error)}${e.cost_usd ? ` (${formatUsd(e.cost_usd)} spent)` : ""}`;
    default:
      return undefined;
  }
}
