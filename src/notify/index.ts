/**
 * Fan-out of run events to the configured channels. A notification must never slow down or
 * break a run (the reference awaited each send in turn: N2), so notify() only starts the sends
 * and returns; flush() at the end of a run gives them a bounded time to finish.
 */
import type { NotificationConfig, NotificationEvent } from "../config/schema.ts";
import { createDesktop, runCommand as spawnCommand } from "./desktop.ts";
import { errorText, type Channel, type ChannelDeps, type Env, type FetchLike, type RunCommand } from "./format.ts";
import { createSlack } from "./slack.ts";
import { createWebhook } from "./webhook.ts";

export type { NotifyContext } from "./format.ts";
import type { NotifyContext } from "./format.ts";

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

export function createNotifier(configs: NotificationConfig[], opts: NotifierOptions): Notifier {
  const log = (msg: string) => {
    try {
      (opts.log ?? ((m: string) => console.error(`mozart: ${m}`)))(msg);
    } catch {
      // A broken logger must not turn a notification problem into a run failure.
    }
  };
  const deps: ChannelDeps = {
    env: opts.env,
    fetch: opts.fetch ?? ((url, init) => fetch(url, init)),
    log,
    runCommand: opts.runCommand ?? spawnCommand,
    platform: opts.platform ?? process.platform,
  };
  const routes = configs.map((c) => ({
    events: new Set<NotificationEvent>(c.on_events),
    channel: (CHANNELS[c.type] as (cfg: unknown, deps: ChannelDeps) => Channel)(c.config, deps),
  }));
  const pending = new Map<Promise<void>, AbortController>();

  return {
    notify(event, ctx) {
      for (const { events, channel } of routes) {
        if (!events.has(event)) continue;
        const ac = new AbortController();
        // Deferred, so even a channel's synchronous setup work happens after notify returns.
        const sent: Promise<void> = Promise.resolve()
          .then(() => channel.send(event, ctx, ac.signal))
          .catch((e: unknown) => log(`${channel.name} notification for ${event} failed: ${errorText(e)}`))
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
