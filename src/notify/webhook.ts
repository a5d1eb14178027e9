/**
 * Generic JSON webhooks: the versioned body of payload.ts (docs/webhook.md), signed when the
 * config names a secret, retried on transient failures (http.ts).
 */
import { createHmac, randomUUID } from "node:crypto";
import type { NotificationConfig } from "../config/schema.ts";
import { VERSION } from "../version.ts";
import type { Channel, ChannelDeps, Env } from "./format.ts";
import { createPostJson } from "./http.ts";
import { webhookPayload } from "./payload.ts";

type WebhookConfig = Extract<NotificationConfig, { type: "webhook" }>["config"];

export function createWebhook(cfg: WebhookConfig, deps: ChannelDeps): Channel {
  const url = cfg.url || (cfg.url_env ? deps.env[cfg.url_env] : undefined);
  const problems: string[] = [];
  const missing = new Set<string>();
  const headers = {
    "content-type": "application/json",
    "user-agent": `mozart/${VERSION}`,
    ...expandHeaders(cfg.headers, deps.env, (name) => missing.add(name)),
  };
  for (const name of missing) problems.push(`webhook header uses \${${name}}, which is not set; it expands to ""`);
  const noUrl = url ? undefined : `no URL (set ${cfg.url_env ? `$${cfg.url_env}` : "notifications[].config.url"})`;
  if (!url) problems.push(`webhook notifications are off: ${noUrl}`);
  else if (!URL.canParse(url)) problems.push("the webhook URL is not a valid URL: every send will fail");
  const secret = cfg.secret_env ? deps.env[cfg.secret_env] : undefined;
  if (cfg.secret_env && !secret) problems.push(`webhook requests go out unsigned: $${cfg.secret_env} (secret_env) is not set`);
  const post = createPostJson(deps.fetch);
  return {
    name: "webhook",
    target: url ? originOf(url) : "(no URL)",
    problems,
    async send(event, ctx, signal) {
      if (!url) return { skipped: noUrl };
      const id = randomUUID();
      const body = JSON.stringify(webhookPayload(event, ctx, { id, includeMetadata: cfg.include_metadata }));
      return post(url, {
        body,
        headers: { ...headers, "x-mozart-event": event, "x-mozart-delivery": id },
        timeoutMs: cfg.timeout * 1000,
        retries: cfg.max_retries,
        retryDelayMs: cfg.retry_delay * 1000,
        signal,
        // Signed per try, so a receiver's replay window holds for a retry as well.
        ...(secret ? { perTry: () => signatureHeaders(secret, body) } : {}),
      });
    },
  };
}

/**
 * `X-Mozart-Timestamp: <unix seconds>` and `X-Mozart-Signature: sha256=<hex>`, the HMAC-SHA256
 * of `<timestamp>.<raw body>` keyed by the secret (docs/webhook.md shows how to check it).
 */
export function signatureHeaders(secret: string, body: string, now = Date.now()): Record<string, string> {
  const timestamp = String(Math.floor(now / 1000));
  const hex = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
  return { "x-mozart-timestamp": timestamp, "x-mozart-signature": `sha256=${hex}` };
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

/** What may be printed of a URL: its scheme, host and port (a path or query may hold a token). */
function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(invalid URL)";
  }
}
