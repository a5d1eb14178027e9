/**
 * Fan-out of run events to the configured channels. A notification must never slow down or
 * break a run (the reference awaited each send in turn: N2), so notify() only starts the sends
 * and returns; flush() at the end of a run gives them a bounded time (FLUSH_TIMEOUT_MS) to
 * finish, then cancels them.
 */
import type { NotificationConfig, NotificationEvent } from "../config/schema.ts";
import type { StoredEvent } from "../state/events.ts";
import type { Requester } from "../state/types.ts";
import { createDesktop, runCommand as spawnCommand } from "./desktop.ts";
import { errorText, logOnce, type Channel, type ChannelDeps, type Env, type FetchLike, type NotifyContext, type RunCommand, type SendResult } from "./format.ts";
import { createSlack } from "./slack.ts";
import { createWebhook } from "./webhook.ts";

export type { NotifyContext } from "./format.ts";

/** How long the end of a run waits for notifications still being sent. */
export const FLUSH_TIMEOUT_MS = 5000;

type ConfigOf<T extends NotificationConfig["type"]> = Extract<NotificationConfig, { type: T }>["config"];

/** One line per channel type. */
const CHANNELS: { [T in NotificationConfig["type"]]: (cfg: ConfigOf<T>, deps: ChannelDeps) => Channel } = {
  desktop: createDesktop,
  slack: createSlack,
  webhook: createWebhook,
};

export interface NotifierOptions {
  env: Env;
  fetch?: FetchLike;
  log?: (msg: string) => void;
  runCommand?: RunCommand;
  /** Which desktop tool to use; defaults to this machine's platform. */
  platform?: NodeJS.Platform;
}

export interface Notifier {
  /** Starts the sends for every channel subscribed to `event`; returns at once, never throws. */
  notify(event: NotificationEvent, ctx: NotifyContext): void;
  /** Waits for pending sends, at most `timeoutMs`; sends still running then are cancelled. */
  flush(timeoutMs: number): Promise<void>;
}

function channelsFor(configs: NotificationConfig[], opts: NotifierOptions) {
  const deps: ChannelDeps = {
    env: opts.env,
    fetch: opts.fetch ?? ((url, init) => fetch(url, init)),
    runCommand: opts.runCommand ?? spawnCommand,
    platform: opts.platform ?? process.platform,
  };
  return configs.map((config) => ({ config, channel: (CHANNELS[config.type] as (cfg: unknown, deps: ChannelDeps) => Channel)(config.config, deps) }));
}

/** A channel's send, safe to call: a channel that throws synchronously rejects instead. */
function sendSafely(channel: Channel, event: NotificationEvent, ctx: NotifyContext, signal: AbortSignal): Promise<SendResult> {
  return Promise.resolve().then(() => channel.send(event, ctx, signal));
}

export function createNotifier(configs: NotificationConfig[], opts: NotifierOptions): Notifier {
  const log = (msg: string) => {
    try {
      (opts.log ?? ((m: string) => console.error(`mozart: ${m}`)))(msg);
    } catch {
      // A broken logger must not turn a notification problem into a run failure.
    }
  };
  // The same failure again (no display, a receiver that is down) is said once per run.
  const once = logOnce(log);
  const routes = channelsFor(configs, opts).map(({ config, channel }, i) => {
    for (const p of channel.problems) once(`${i}:${p}`, p);
    return { i, events: new Set<NotificationEvent>(config.on_events), channel };
  });
  const pending = new Map<Promise<void>, AbortController>();

  return {
    notify(event, ctx) {
      for (const { i, events, channel } of routes) {
        if (!events.has(event)) continue;
        const ac = new AbortController();
        // Deferred, so even a channel's synchronous setup work happens after notify returns.
        const sent: Promise<void> = sendSafely(channel, event, ctx, ac.signal)
          .then(
            () => {},
            (e: unknown) => {
              const why = errorText(e);
              const tries = (e as { tries?: number }).tries ?? 1;
              once(`${i}:${why}`, `${channel.name} notification for ${event} failed${tries > 1 ? ` after ${tries} tries` : ""}: ${why} (the same failure again is not reported)`);
            },
          )
          .finally(() => pending.delete(sent));
        pending.set(sent, ac);
      }
    },

    async flush(timeoutMs) {
      if (!pending.size) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const expired = await Promise.race([
        Promise.allSettled([...pending.keys()]).then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
      ]);
      clearTimeout(timer);
      if (!expired) return;
      log(`${pending.size} notification(s) still unsent after ${timeoutMs} ms; giving up on them`);
      for (const ac of pending.values()) ac.abort();
    },
  };
}

/**
 * What would stop or weaken the channels in this environment (a URL, secret or header variable
 * that is not set), for `mozart validate`; a run reports the same when it starts.
 */
export function notificationProblems(configs: NotificationConfig[], env: Env): string[] {
  return channelsFor(configs, { env }).flatMap(({ config, channel }, i) => channel.problems.map((p) => `notifications[${i}] (${config.type}): ${p}`));
}

/** What `mozart notify --test` reports for one configured channel. */
export interface ChannelTest {
  index: number;
  type: NotificationConfig["type"];
  target: string;
  /** Whether a real run sends this event to this channel (its on_events). */
  subscribed: boolean;
  ok: boolean;
  latency_ms: number;
  status?: number;
  tries?: number;
  error?: string;
  problems: string[];
}

/**
 * Sends one notification through every configured channel, whatever its on_events, and waits for
 * each: how it went and how long it took. A channel that could not send at all failed.
 */
export async function sendToEvery(configs: NotificationConfig[], event: NotificationEvent, ctx: NotifyContext, opts: NotifierOptions): Promise<ChannelTest[]> {
  return Promise.all(
    channelsFor(configs, opts).map(async ({ config, channel }, index) => {
      const started = performance.now();
      const base = { index, type: config.type, target: channel.target, subscribed: config.on_events.includes(event), problems: channel.problems };
      const latency = () => Math.round(performance.now() - started);
      try {
        const r = await sendSafely(channel, event, ctx, new AbortController().signal);
        if (r.skipped) {
          const skipped = r.skipped;
          return { ...base, problems: base.problems.filter((p) => !p.includes(skipped)), ok: false, latency_ms: latency(), error: `not sent: ${skipped}` };
        }
        return { ...base, ok: true, latency_ms: latency(), ...(r.status !== undefined ? { status: r.status } : {}), ...(r.tries !== undefined ? { tries: r.tries } : {}) };
      } catch (e) {
        const failed = e as { status?: number; tries?: number };
        return { ...base, ok: false, latency_ms: latency(), error: errorText(e), ...(failed.status !== undefined ? { status: failed.status } : {}), ...(failed.tries !== undefined ? { tries: failed.tries } : {}) };
      }
    }),
  );
}

/** Where a run stands when it starts, for the progress its notifications report. */
export interface FeedStart {
  job_id: string;
  job_name: string;
  total_batches: number;
  completed: number;
  failed: number;
  cost_usd: number;
}

/**
 * Turns a run's recorded events into notifications. Notifications are fed from the engine's
 * event stream, so a run started any way (run, resume, --join, the dashboard) notifies alike.
 * The feed belongs to one run: it carries the job's progress and cost forward from `start`
 * (attempt costs, completions and failures), remembers a hold until it ends, and takes the
 * final events' own counts, which the store derived from every runner's batches.
 */
export function createNotificationFeed(start: FeedStart): (e: StoredEvent) => [NotificationEvent, NotifyContext] | undefined {
  let { completed, failed, cost_usd } = start;
  let hold: { until: number; reason: string } | undefined;
  const holdAt = (at: string) => (hold && hold.until > Date.parse(at) ? { hold: { until: new Date(hold.until).toISOString(), reason: hold.reason } } : {});
  return (e) => {
    const ctx = (): NotifyContext => ({ job_id: start.job_id, job_name: start.job_name, timestamp: e.at, total_batches: start.total_batches, completed, failed, cost_usd });
    switch (e.type) {
      case "job_start":
        if (e.hold) hold = { until: e.hold.until, reason: e.hold.reason };
        // A runner joining a running job adds workers, not a new start: the first runner said it.
        if (e.mode === "join") return undefined;
        return ["job_start", { ...ctx(), to_run: e.to_run, resumed: e.resumed, ...holdAt(e.at) }];
      case "attempt_end":
        cost_usd += e.cost_usd ?? 0;
        return undefined;
      case "batch_start":
        return ["batch_start", { ...ctx(), batch: { number: e.batch_num, start_item: e.start_item, end_item: e.end_item } }];
      case "batch_complete":
        completed++;
        return ["batch_complete", { ...ctx(), batch: { number: e.batch_num, attempts: e.attempts, duration_seconds: e.duration_ms / 1000, cost_usd: e.cost_usd } }];
      case "batch_failed":
        failed++;
        return ["batch_failed", { ...ctx(), batch: { number: e.batch_num, attempts: e.attempts }, error: e.error.message }];
      case "batch_conflict":
        return ["batch_conflict", { ...ctx(), batch: { number: e.batch_num }, error: e.message }];
      case "rate_limit_hold":
        hold = { until: e.until, reason: e.reason };
        return ["rate_limit_hold", { ...ctx(), batch: { number: e.batch_num }, ...holdAt(e.at) }];
      case "hold_end":
        hold = undefined;
        return undefined;
      case "job_paused":
        completed = e.completed;
        if (e.cost_usd !== undefined) cost_usd = e.cost_usd;
        return ["job_paused", { ...ctx(), reason: stopText(e.reason, e.by, "mozart pause"), ...holdAt(e.at), ...(e.budget ? { budget: { spent_usd: e.budget.spent_usd, max_cost_usd: e.budget.max_cost_usd } } : {}) }];
      case "job_cancelled":
        completed = e.completed;
        if (e.cost_usd !== undefined) cost_usd = e.cost_usd;
        return ["job_cancelled", { ...ctx(), ...(e.by ? { reason: stopText("", e.by, "mozart cancel") } : {}) }];
      case "job_complete":
        ({ completed, cost_usd } = e);
        failed = 0;
        return ["job_complete", { ...ctx(), duration_seconds: e.duration_ms / 1000 }];
      case "job_failed":
        ({ completed, failed, cost_usd } = e);
        return ["job_failed", { ...ctx(), error: e.error, duration_seconds: e.duration_ms / 1000 }];
      default:
        return undefined;
    }
  };
}

/** `Ctrl+C`, `SIGTERM`, `mozart pause from alice@build-1`, or the engine's own reason. */
function stopText(reason: string, by: Requester | undefined, command: string): string {
  if (by?.via === "signal") return by.signal === "SIGINT" ? "Ctrl+C" : (by.signal ?? "a signal");
  if (by) return `${by.via === "cli" ? command : `the ${by.via}`} from ${by.user ? `${by.user}@` : ""}${by.host}`;
  return reason;
}
