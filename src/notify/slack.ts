/**
 * Slack incoming webhooks: one attachment per event, coloured by outcome, with the facts as
 * fields so the message stays readable on a phone.
 */
import type { NotificationConfig, NotificationEvent } from "../config/schema.ts";
import {
  clip,
  countsOf,
  formatCost,
  formatDuration,
  logOnce,
  messageFor,
  progressOf,
  titleFor,
  type Channel,
  type ChannelDeps,
  type NotifyContext,
} from "./format.ts";

type SlackConfig = Extract<NotificationConfig, { type: "slack" }>["config"];

const COLOURS: Partial<Record<NotificationEvent, string>> = {
  job_complete: "#36a64f",
  job_failed: "#d00000",
  job_paused: "#ffcc00",
  batch_failed: "#ff9800",
  rate_limit_hold: "#ff9800",
};
const NEUTRAL = "#439fe0";

const EMOJI: Record<NotificationEvent, string> = {
  job_start: ":rocket:",
  job_complete: ":white_check_mark:",
  job_failed: ":x:",
  job_paused: ":pause_button:",
  batch_start: ":hourglass_flowing_sand:",
  batch_complete: ":heavy_check_mark:",
  batch_failed: ":warning:",
  rate_limit_hold: ":snail:",
};

export function createSlack(cfg: SlackConfig, deps: ChannelDeps): Channel {
  const url = cfg.webhook_url || deps.env[cfg.webhook_url_env];
  const warn = logOnce(deps.log);
  return {
    name: "slack",
    async send(event, ctx, signal) {
      if (!url) {
        warn("no-url", `slack notifications are off: set notifications[].config.webhook_url or $${cfg.webhook_url_env}`);
        return;
      }
      const res = await deps.fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(slackPayload(event, ctx, cfg)),
        signal: AbortSignal.any([signal, AbortSignal.timeout(cfg.timeout * 1000)]),
      });
      // The webhook URL is a secret: never put it in a message.
      const body = await res.text().catch(() => "");
      if (!res.ok) throw new Error(`Slack answered HTTP ${res.status}${body ? `: ${clip(body, 200)}` : ""}`);
    },
  };
}

interface Field {
  title: string;
  value: string;
  short: boolean;
}

export function slackPayload(event: NotificationEvent, ctx: NotifyContext, cfg: SlackConfig): Record<string, unknown> {
  const title = titleFor(event, ctx);
  const fields: Field[] = [];
  const add = (t: string, value: string | undefined, short = true) => value && fields.push({ title: t, value, short });
  add("Progress", progressOf(ctx));
  add("Results", countsOf(ctx));
  add("Duration", ctx.duration_seconds === undefined ? undefined : formatDuration(ctx.duration_seconds));
  add("Cost", ctx.cost_usd === undefined ? undefined : formatCost(ctx.cost_usd));
  add("Holding until", ctx.hold_until);
  add("Error", ctx.error ? `\`\`\`${clip(ctx.error, 200)}\`\`\`` : undefined, false);
  const ts = Math.floor(Date.parse(ctx.timestamp) / 1000);
  const attachment = {
    fallback: `${title}: ${messageFor(event, ctx)}`,
    color: COLOURS[event] ?? NEUTRAL,
    title: `${EMOJI[event]} ${title}`,
    ...(fields.length ? { fields } : { text: messageFor(event, ctx) }),
    footer: `Job: ${ctx.job_name} (${ctx.job_id})`,
    ...(Number.isFinite(ts) ? { ts } : {}),
  };
  return {
    username: cfg.username,
    icon_emoji: cfg.icon_emoji,
    ...(cfg.channel ? { channel: cfg.channel } : {}),
    attachments: [attachment],
  };
}
