/**
 * The webhook body, version 1: one zod schema is the code's type, the check the tests apply to
 * what a receiver gets, and docs/webhook.schema.json (`bun run docs:config` writes it; a test
 * fails when the committed file drifts). Within a version fields are only ever added, so the
 * objects are open: a receiver must ignore fields it does not know. Removing or changing the
 * meaning of a field raises `schema_version`.
 */
import { z } from "zod";
import { NOTIFICATION_EVENTS, type NotificationEvent } from "../config/schema.ts";
import { VERSION } from "../version.ts";
import { describeEvent, type NotifyContext } from "./format.ts";

export const WEBHOOK_SCHEMA_VERSION = 1;

const count = () => z.int().min(0);
const usd = () => z.number().min(0);

export const WebhookPayloadSchema = z
  .looseObject({
    schema_version: z.literal(WEBHOOK_SCHEMA_VERSION).describe("Version of this body's shape; raised only when a field is removed or changes meaning."),
    id: z.string().min(1).describe("Unique per notification and the same on every retry of it (also in `X-Mozart-Delivery`): drop repeats by it."),
    event: z.enum(NOTIFICATION_EVENTS).describe("What happened (also in `X-Mozart-Event`)."),
    test: z.boolean().describe("true only for a sample sent by `mozart notify --test`."),
    occurred_at: z.iso.datetime().describe("When the event happened (ISO 8601, UTC)."),
    job: z
      .looseObject({
        id: z.string().describe("The job's id, as `mozart status <id>` takes it."),
        name: z.string().describe("The job's `name` from its job file."),
      })
      .describe("The job the event is about."),
    progress: z
      .looseObject({
        completed: count().describe("Batches completed so far."),
        failed: count().describe("Batches that failed (after their retries)."),
        total: count().describe("Batches in the job."),
      })
      .describe("How far the job is."),
    cost_usd: usd().describe("What the job has cost so far, in USD (0 when the backend reports no cost)."),
    batch: z
      .looseObject({
        number: z.int().min(1).describe("The batch number, from 1."),
        start_item: count().optional().describe("First item of the batch."),
        end_item: count().optional().describe("Last item of the batch."),
        attempts: count().optional().describe("Attempts it took (batch_complete, batch_failed)."),
        duration_seconds: z.number().min(0).optional().describe("How long the batch ran (batch_complete)."),
        cost_usd: usd().optional().describe("What the batch cost (batch_complete)."),
      })
      .optional()
      .describe("Batch events and rate_limit_hold: the batch concerned."),
    to_run: count().optional().describe("job_start: batches this run means to run."),
    resumed: z.boolean().optional().describe("job_start: the job had attempts before this run."),
    duration_seconds: z.number().min(0).optional().describe("job_complete, job_failed: how long the job has run."),
    hold: z
      .looseObject({
        until: z.iso.datetime().describe("When the hold ends and work starts again (ISO 8601, UTC)."),
        reason: z.string().describe("What the backend said."),
      })
      .optional()
      .describe("rate_limit_hold, and job_start or job_paused while a hold is on."),
    error: z.string().optional().describe("batch_failed, batch_conflict, job_failed: what went wrong."),
    reason: z.string().optional().describe("job_paused, job_cancelled: why, or who asked."),
    title: z.string().describe("Short title, as a desktop notification shows it."),
    message: z.string().describe("The whole notification on one line: what happened, progress and cost, the command to run next."),
    next_commands: z.array(z.string()).describe("Commands to run next, in order (`mozart resume <job>`, `mozart status <job>`); may be empty."),
    metadata: z
      .looseObject({ source: z.literal("mozart"), version: z.string().describe("Mozart's version.") })
      .optional()
      .describe("Present unless the webhook's `include_metadata` is false."),
  })
  .meta({ title: "Mozart webhook notification", $id: `https://mozart.dev/schema/webhook-v${WEBHOOK_SCHEMA_VERSION}.json` });

export type WebhookPayload = z.output<typeof WebhookPayloadSchema>;

export function webhookPayload(event: NotificationEvent, ctx: NotifyContext, opts: { id: string; includeMetadata: boolean }): WebhookPayload {
  const notice = describeEvent(event, ctx);
  return {
    schema_version: WEBHOOK_SCHEMA_VERSION,
    id: opts.id,
    event,
    test: ctx.test === true,
    occurred_at: ctx.timestamp,
    job: { id: ctx.job_id, name: ctx.job_name },
    progress: { completed: ctx.completed, failed: ctx.failed, total: ctx.total_batches },
    cost_usd: ctx.cost_usd,
    ...(ctx.batch ? { batch: ctx.batch } : {}),
    ...(ctx.to_run !== undefined ? { to_run: ctx.to_run } : {}),
    ...(ctx.resumed !== undefined ? { resumed: ctx.resumed } : {}),
    ...(ctx.duration_seconds !== undefined ? { duration_seconds: ctx.duration_seconds } : {}),
    ...(ctx.hold ? { hold: ctx.hold } : {}),
    ...(ctx.error !== undefined ? { error: ctx.error } : {}),
    ...(ctx.reason !== undefined ? { reason: ctx.reason } : {}),
    title: notice.title,
    message: notice.text,
    next_commands: notice.next.map((n) => n.command),
    ...(opts.includeMetadata ? { metadata: { source: "mozart" as const, version: VERSION } } : {}),
  };
}

/** docs/webhook.schema.json. */
export function webhookJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(WebhookPayloadSchema, { io: "output" }) as Record<string, unknown>;
}
