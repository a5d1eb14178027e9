/**
 * The field table of docs/webhook.md, generated from the webhook body's schema (payload.ts) into
 * the part of the file between two markers; the prose around it is written by hand. `bun run
 * docs:config` rewrites it, and a test fails when the committed file drifts.
 */
import { cell, typeOf, type Prop } from "../config/docs.ts";
import { webhookJsonSchema } from "./payload.ts";

export const FIELDS_START = "<!-- webhook fields: generated from src/notify/payload.ts by `bun run docs:config` -->";
export const FIELDS_END = "<!-- end of webhook fields -->";

/** One row per field, nested objects as `parent.child`. */
export function webhookFieldsTable(): string[] {
  const rows = ["| field | type | always there | description |", "| --- | --- | --- | --- |"];
  const walk = (obj: Prop, prefix: string) => {
    for (const [key, p] of Object.entries(obj.properties ?? {})) {
      const type = p.type === "object" ? "object" : typeOf(p);
      rows.push(`| \`${prefix}${key}\` | ${type} | ${obj.required?.includes(key) ? "yes" : "no"} | ${cell(p.description ?? "")} |`);
      if (p.properties) walk(p, `${prefix}${key}.`);
    }
  };
  walk(webhookJsonSchema() as Prop, "");
  return rows;
}

/** `markdown` with the generated table put between the markers. */
export function withWebhookFields(markdown: string): string {
  const start = markdown.indexOf(FIELDS_START);
  const end = markdown.indexOf(FIELDS_END);
  if (start < 0 || end < start) throw new Error(`docs/webhook.md needs the markers ${FIELDS_START} and ${FIELDS_END}`);
  return `${markdown.slice(0, start + FIELDS_START.length)}\n\n${webhookFieldsTable().join("\n")}\n\n${markdown.slice(end)}`;
}
