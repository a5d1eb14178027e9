/**
 * Generic JSON webhooks. Transient failures (5xx, timeouts, network errors) are retried with a
 * fixed delay; a 4xx means the request itself is wrong, so repeating it can't help.
 */
import pkg from "../../package.json" with { type: "json" };
import type { NotificationConfig, NotificationEvent } from "../config/schema.ts";
import { clip, errorText, logOnce, type Channel, type ChannelDeps, type Env, type NotifyContext } from "./format.ts";

type WebhookConfig = Extract<NotificationConfig, { type: "webhook" }>["config"];

class PermanentError extends Error {}

export function createWebhook(cfg: WebhookConfig, deps: ChannelDeps): Channel {
  const url = cfg.url || (cfg.url_env ? deps.env[cfg.url_env] : undefined);
  const warn = logOnce(deps.log);
  const headers = {
    "content-type": "application/json",
    "user-agent": `mozart/${pkg.version}`,
    ...expandHeaders(cfg.headers, deps.env, (name) => warn(`unset:${name}`, `webhook header uses \${${name}}, which is not set; it expands to ""`)),
  };
  return {
    name: "webhook",
    async send(event, ctx, signal) {
      if (!url) {
        const where = cfg.url_env ? `$${cfg.url_env}` : "notifications[].config.url";
        warn("no-url", `webhook notifications are off: no URL (set ${where})`);
        return;
      }
      const body = JSON.stringify(webhookPayload(event, ctx, cfg.include_metadata));
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await deps.fetch(url, { method: "POST", headers, body, signal: AbortSignal.any([signal, AbortSignal.timeout(cfg.timeout * 1000)]) });
          const text = await res.text().catch(() => "");
          if (res.ok) return;
          const problem = `webhook answered HTTP ${res.status}${text ? `: ${clip(text, 200)}` : ""}`;
          if (res.status < 500) throw new PermanentError(problem);
          if (attempt >= cfg.max_retries) throw new Error(problem);
        } catch (e) {
          if (e instanceof PermanentError || signal.aborted) throw e;
          if (attempt >= cfg.max_retries) throw new Error(`webhook failed after ${attempt + 1} tries: ${errorText(e)}`);
        }
        await sleep(cfg.retry_delay * 1000, signal);
      }
    },
  };
}

export function webhookPayload(event: NotificationEvent, ctx: NotifyContext, includeMetadata: boolean): Record<string, unknown> {
  return {
    event_type: event,
    context: { event, ...ctx },
    ...(includeMetadata ? { metadata: { source: "mozart", version: pkg.version } } : {}),
  };
}

/** `${VAR}` in header values comes from the environment, so tokens stay out of job files. */
export function expandHeaders(headers: Record<string, string>, env: Env, onMissing: (name: string) => void): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    out[k] = v.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const value = env[name];
      if (value === undefined) onMissing(name);
      return value ?? "";
    });
  }
  return out;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
