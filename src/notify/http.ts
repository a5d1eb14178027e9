/**
 * One JSON POST with retries, for webhooks and Slack, through ofetch. Retried: 5xx, 429, network
 * errors and a try that timed out, with a wait that doubles from `retryDelayMs` (at most 30 s; a
 * 429's Retry-After is honoured up to the same cap). Never retried: any other 4xx, which says the
 * request itself is wrong. So one send ends within `tries × timeoutMs` plus the waits, and a
 * cancelled send (the run's bounded flush) stops at its next try.
 *
 * Error messages never contain the URL: a Slack webhook URL is a secret, and so may be a
 * webhook's path or query.
 */
import { createFetch, type FetchContext } from "ofetch";
import { clip } from "../text.ts";
import { errorText, type FetchLike } from "./format.ts";

/** The longest wait between two tries, whatever the backoff or the receiver's Retry-After say. */
const MAX_RETRY_WAIT_MS = 30_000;
const RETRIED = [429, ...Array.from({ length: 100 }, (_, i) => 500 + i)];

export interface PostOptions {
  body: string;
  headers: Record<string, string>;
  /** Limit of each try. */
  timeoutMs: number;
  retries: number;
  retryDelayMs: number;
  signal: AbortSignal;
  /** Headers made fresh for every try (a signature over the try's own timestamp). */
  perTry?: () => Record<string, string>;
}

export interface Delivered {
  status: number;
  tries: number;
}

/** A send that failed: what its last try saw, and how many tries it took. */
export class DeliveryError extends Error {
  override name = "DeliveryError";
  constructor(
    message: string,
    readonly tries: number,
    readonly status?: number,
  ) {
    super(message);
  }
}

export type PostJson = (url: string, opts: PostOptions) => Promise<Delivered>;

export function createPostJson(fetch: FetchLike): PostJson {
  const $fetch = createFetch({ fetch: fetch as typeof globalThis.fetch });
  return async (url, o) => {
    let tries = 0;
    try {
      const res = await $fetch.raw(url, {
        method: "POST",
        body: o.body,
        headers: o.headers,
        responseType: "text",
        retry: o.retries,
        retryStatusCodes: RETRIED,
        retryDelay: (ctx) => (o.signal.aborted ? 0 : waitBefore(tries, o.retryDelayMs, ctx)),
        onRequest(ctx) {
          tries++;
          // ofetch's own `timeout` is off once a signal is given: each try gets its own limit here.
          ctx.options.signal = AbortSignal.any([o.signal, AbortSignal.timeout(o.timeoutMs)]);
          for (const [k, v] of Object.entries(o.perTry?.() ?? {})) ctx.options.headers.set(k, v);
        },
      });
      return { status: res.status, tries };
    } catch (e) {
      const err = e as { response?: Response; data?: unknown; cause?: unknown };
      const status = err.response?.status;
      const body = typeof err.data === "string" ? clip(err.data, 200) : "";
      const what = status !== undefined ? `HTTP ${status}${body ? `: ${body}` : ""}` : errorText(err.cause ?? e);
      throw new DeliveryError(what.split(url).join("<url>"), tries, status);
    }
  };
}

/** The wait before try `tries + 1`: doubling from `base`, or the receiver's Retry-After; capped. */
function waitBefore(tries: number, base: number, ctx: FetchContext): number {
  const after = ctx.response?.status === 429 ? retryAfterMs(ctx.response.headers.get("retry-after")) : undefined;
  return Math.min(MAX_RETRY_WAIT_MS, after ?? base * 2 ** Math.max(0, tries - 1));
}

function retryAfterMs(value: string | null): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}
