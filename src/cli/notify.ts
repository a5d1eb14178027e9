/**
 * `mozart notify --test <job file>`: a sample notification through every channel the job file
 * configures, whatever their on_events (the point is to see each one work), with each channel's
 * result and latency. Nothing is run and no state is touched.
 */
import { defineCommand } from "citty";
import { checkJob } from "../config/check.ts";
import { closest } from "../config/errors.ts";
import { loadJobFile } from "../config/load.ts";
import { NOTIFICATION_EVENTS, type NotificationEvent } from "../config/schema.ts";
import { EXIT, MozartError } from "../errors.ts";
import { describeEvent } from "../notify/format.ts";
import { sendToEvery, type ChannelTest, type NotifyContext } from "../notify/index.ts";
import { shellQuote } from "../text.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput, type Output } from "./output.ts";

export default defineCommand({
  meta: { name: "notify", description: "Send a sample notification through every channel of a job file (--test) and report each one's result and latency" },
  args: {
    config: { type: "positional", required: true, description: "Job file (.yaml, .json or .toml)" },
    test: { type: "boolean", description: "Send a sample notification now, through every configured channel, whatever its on_events" },
    event: { type: "string", description: `The event to sample (default job_complete): ${NOTIFICATION_EVENTS.join(", ")}`, valueHint: "EVENT" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    if (!args.test) {
      throw new MozartError("mozart notify sends a sample only with --test", { exitCode: EXIT.usage, hint: `mozart notify --test ${shellQuote(args.config)}` });
    }
    const event = eventArg(args.event);
    const job = await checkJob(await loadJobFile(args.config));
    const c = job.config;
    if (!c.notifications.length) {
      throw new MozartError(`job ${c.name} has no notifications configured: nothing to send`, {
        hint: "add a notifications: list (desktop, slack or webhook) to the job file; see README, Notifications",
      });
    }
    const ctx = sampleContext(event, c.name, job.totalBatches, Date.now());
    const n = c.notifications.length;
    out.info(`sending a sample ${event} notification for job ${c.name} through ${n} channel${n === 1 ? "" : "s"}…`);
    const results = await sendToEvery(c.notifications, event, ctx, { env: process.env });
    const ok = results.every((r) => r.ok);
    if (out.json) {
      out.emit({ ok, job_name: c.name, event, message: describeEvent(event, ctx).text, channels: results });
    } else {
      printResults(out, event, results);
    }
    return ok ? EXIT.ok : EXIT.failed;
  },
});

function eventArg(value: string | undefined): NotificationEvent {
  if (value === undefined) return "job_complete";
  if ((NOTIFICATION_EVENTS as readonly string[]).includes(value)) return value as NotificationEvent;
  const guess = closest(value, NOTIFICATION_EVENTS);
  throw new MozartError(`unknown event "${value}"`, { exitCode: EXIT.usage, hint: guess ? `did you mean --event ${guess}?` : `events: ${NOTIFICATION_EVENTS.join(", ")}` });
}

function printResults(out: Output, event: NotificationEvent, results: ChannelTest[]): void {
  const { c } = out;
  for (const r of results) {
    for (const p of r.problems) out.warn(`${r.type} (notifications[${r.index}]): ${p}`);
    const took = `in ${r.latency_ms} ms${r.tries && r.tries > 1 ? ` after ${r.tries} tries` : ""}`;
    const name = `${r.type} (notifications[${r.index}], ${r.target})`;
    if (r.ok) out.print(`${c.green("✓")} ${name}: sent${r.status !== undefined ? `, HTTP ${r.status}` : ""} ${took}`);
    else out.print(`${c.red("✗")} ${name}: failed ${took}: ${r.error ?? "unknown error"}`);
    if (!r.subscribed) out.print(c.dim(`  ${event} is not in its on_events: a real run would not send it this event`));
  }
  const sent = results.filter((r) => r.ok).length;
  out.print(`${sent} of ${results.length} channel${results.length === 1 ? "" : "s"} delivered the sample ${event}`);
}

/** A plausible moment of the job for `event`, marked as a test everywhere it shows. */
export function sampleContext(event: NotificationEvent, name: string, total: number, now: number): NotifyContext {
  const done = event === "job_complete" ? total : event === "job_start" ? 0 : Math.floor(total * 0.6);
  const failed = event === "job_failed" || event === "batch_failed" ? Math.min(1, total - done) : 0;
  const batch = Math.min(total, done + 1);
  const ctx: NotifyContext = { job_id: name, job_name: name, timestamp: new Date(now).toISOString(), total_batches: total, completed: done, failed, cost_usd: event === "job_start" ? 0 : 1.23, test: true };
  const error = "sample error sent by mozart notify --test";
  switch (event) {
    case "job_start":
      return { ...ctx, to_run: total, resumed: false };
    case "batch_start":
      return { ...ctx, batch: { number: batch } };
    case "batch_complete":
      return { ...ctx, batch: { number: batch, attempts: 1, duration_seconds: 62, cost_usd: 0.12 } };
    case "batch_failed":
      return { ...ctx, batch: { number: batch, attempts: 3 }, error };
    case "batch_conflict":
      return { ...ctx, batch: { number: batch }, error: "merge conflict in src/app.ts (sample sent by mozart notify --test)" };
    case "rate_limit_hold":
      return { ...ctx, batch: { number: batch }, hold: { until: new Date(now + (2 * 60 + 13) * 60_000).toISOString(), reason: "usage limit reached (sample)" } };
    case "job_paused":
      return { ...ctx, reason: "mozart pause (sample)" };
    case "job_cancelled":
      return { ...ctx, reason: "mozart cancel (sample)" };
    case "job_complete":
      return { ...ctx, duration_seconds: 3900 };
    case "job_failed":
      return { ...ctx, error, duration_seconds: 3900 };
  }
}
