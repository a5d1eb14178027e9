/**
 * Slack incoming webhooks, in Block Kit: a header (the title), a section with what happened and
 * the progress, a section with the commands to run next, and a context line naming the job and
 * the time; `text` carries the same message on one line for notifications and old clients.
 * Sent with the same retries as webhooks (2 retries; Slack answers 429 when rate limited).
 */
import type { NotificationConfig, NotificationEvent } from "../config/schema.ts";
import { clip } from "../text.ts";
import { formatTime } from "../time.ts";
import { describeEvent, type Channel, type ChannelDeps, type NotifyContext } from "./format.ts";
import { createPostJson } from "./http.ts";

type SlackConfig = Extract<NotificationConfig, { type: "slack" }>["config"];

const SLACK_RETRIES = 2;
const SLACK_RETRY_DELAY_MS = 1000;
/** Block Kit's limit for a header's text. */
const HEADER_MAX = 150;

const EMOJI: Record<NotificationEvent, string> = {
  job_start: ":rocket:",
  job_complete: ":white_check_mark:",
  job_failed: ":x:",
  job_paused: ":pause_button:",
  job_cancelled: ":stop_button:",
  batch_start: ":hourglass_flowing_sand:",
  batch_complete: ":heavy_check_mark:",
  batch_failed: ":warning:",
  batch_conflict: ":twisted_rightwards_arrows:",
  rate_limit_hold: ":snail:",
};

export function createSlack(cfg: SlackConfig, deps: ChannelDeps): Channel {
  const url = cfg.webhook_url || deps.env[cfg.webhook_url_env];
  const noUrl = url ? undefined : `no webhook URL (set notifications[].config.webhook_url or $${cfg.webhook_url_env})`;
  const post = createPostJson(deps.fetch);
  return {
    name: "slack",
    // The webhook URL is a secret: it is never printed, not even its host.
    target: "Slack",
    problems: noUrl ? [`slack notifications are off: ${noUrl}`] : [],
    async send(event, ctx, signal) {
      if (!url) return { skipped: noUrl };
      return post(url, {
        body: JSON.stringify(slackPayload(event, ctx, cfg)),
        headers: { "content-type": "application/json" },
        timeoutMs: cfg.timeout * 1000,
        retries: SLACK_RETRIES,
        retryDelayMs: SLACK_RETRY_DELAY_MS,
        signal,
      });
    },
  };
}

/** Slack's mrkdwn reads `&`, `<` and `>` as markup: text from outside must not. */
const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function slackPayload(event: NotificationEvent, ctx: NotifyContext, cfg: SlackConfig): Record<string, unknown> {
  const n = describeEvent(event, ctx);
  const at = Date.parse(ctx.timestamp);
  const blocks: Array<Record<string, unknown>> = [
    { type: "header", text: { type: "plain_text", text: clip(`${EMOJI[event]} ${n.title}`, HEADER_MAX), emoji: true } },
    { type: "section", text: { type: "mrkdwn", text: `*${escape(n.headline)}*\n${escape(n.progress)}` } },
  ];
  if (n.next.length) {
    const lines = n.next.map((x) => `${escape(x.label.charAt(0).toUpperCase() + x.label.slice(1))}: \`${escape(x.command)}\``);
    blocks.push({ type: "section", text: { type: "mrkdwn", text: lines.join("\n") } });
  }
  const when = Number.isFinite(at) ? ` · ${formatTime(at)}` : "";
  blocks.push({ type: "context", elements: [{ type: "mrkdwn", text: `Job \`${escape(ctx.job_id)}\`${when}${ctx.test ? " · test notification" : ""}` }] });
  return {
    text: `${n.title}: ${n.text}`,
    blocks,
    username: cfg.username,
    icon_emoji: cfg.icon_emoji,
    ...(cfg.channel ? { channel: cfg.channel } : {}),
  };
}
