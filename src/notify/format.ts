/**
 * What every notification channel shares: the context it receives, the contract it implements,
 * and the one wording of titles and messages, so desktop, Slack and webhooks say the same thing.
 */
import type { NotificationEvent } from "../config/schema.ts";

export interface NotifyContext {
  job_id: string;
  job_name: string;
  /** ISO 8601, UTC. */
  timestamp: string;
  batch_num?: number;
  total_batches?: number;
  /** Batches completed so far (or in the run, for job_complete). */
  completed?: number;
  failed?: number;
  error?: string;
  duration_seconds?: number;
  /** ISO time a rate-limit hold ends. */
  hold_until?: string;
  cost_usd?: number;
}

export type Env = Record<string, string | undefined>;
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;
export type RunCommand = (
  file: string,
  args: string[],
  opts: { timeoutMs: number; env: Env; signal: AbortSignal },
) => Promise<{ exitCode: number | null; stderr: string }>;

/** What a channel factory gets from createNotifier. */
export interface ChannelDeps {
  env: Env;
  fetch: FetchLike;
  log: (msg: string) => void;
  runCommand: RunCommand;
  platform: NodeJS.Platform;
}

/** One configured destination. send may reject; the notifier catches and logs. */
export interface Channel {
  name: string;
  send(event: NotificationEvent, ctx: NotifyContext, signal: AbortSignal): Promise<void>;
}

export function titleFor(event: NotificationEvent, ctx: NotifyContext): string {
  const job = `job '${ctx.job_name}'`;
  const batch = `${job} batch ${ctx.batch_num ?? "?"}`;
  switch (event) {
    case "job_start":
      return `Mozart: ${job} started`;
    case "job_complete":
      return `Mozart: ${job} complete`;
    case "job_failed":
      return `Mozart: ${job} failed`;
    case "job_paused":
      return `Mozart: ${job} paused`;
    case "batch_start":
      return `Mozart: ${batch} started`;
    case "batch_complete":
      return `Mozart: ${batch} complete`;
    case "batch_failed":
      return `Mozart: ${batch} failed`;
    case "rate_limit_hold":
      return `Mozart: ${job} on hold (rate limit)`;
  }
}

export function messageFor(event: NotificationEvent, ctx: NotifyContext): string {
  const parts: string[] = [];
  const progress = progressOf(ctx);
  if (progress) parts.push(progress);
  const counts = countsOf(ctx);
  if (counts) parts.push(counts);
  if (ctx.duration_seconds !== undefined) parts.push(formatDuration(ctx.duration_seconds));
  if (ctx.hold_until) parts.push(`Holding until ${ctx.hold_until}`);
  if (ctx.cost_usd !== undefined) parts.push(`Cost ${formatCost(ctx.cost_usd)}`);
  if (ctx.error) parts.push(`Error: ${clip(ctx.error, 100)}`);
  return parts.length ? parts.join(" | ") : event;
}

export function progressOf(ctx: NotifyContext): string | undefined {
  if (ctx.batch_num === undefined) return undefined;
  return ctx.total_batches === undefined ? `Batch ${ctx.batch_num}` : `Batch ${ctx.batch_num}/${ctx.total_batches}`;
}

export function countsOf(ctx: NotifyContext): string | undefined {
  if (ctx.completed === undefined && ctx.failed === undefined) return undefined;
  return `${ctx.completed ?? 0} completed, ${ctx.failed ?? 0} failed`;
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)}min`;
  return `${(seconds / 3600).toFixed(1)}h`;
}

export function formatCost(usd: number): string {
  // Cents hide the cost of cheap batches entirely.
  return `$${usd > 0 && usd < 0.01 ? usd.toFixed(4) : usd.toFixed(2)}`;
}

/** One line, at most `max` characters including the ellipsis. */
export function clip(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 3)}...`;
}

/** A logger that reports a given problem only the first time, so a broken channel doesn't spam. */
export function logOnce(log: (msg: string) => void): (key: string, msg: string) => void {
  const seen = new Set<string>();
  return (key, msg) => {
    if (seen.has(key)) return;
    seen.add(key);
    log(msg);
  };
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.name === "TimeoutError" ? "timed out" : e.message;
  return String(e);
}
