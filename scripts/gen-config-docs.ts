/**
 * Regenerates what is generated from the zod schemas: docs/configuration.md and
 * docs/job.schema.json (the job file), docs/webhook.schema.json and the field table of
 * docs/webhook.md (the webhook body).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { configurationMarkdown } from "../src/config/docs.ts";
import { jobJsonSchema } from "../src/config/schema.ts";
import { withWebhookFields } from "../src/notify/docs.ts";
import { webhookJsonSchema } from "../src/notify/payload.ts";

const docs = join(import.meta.dirname, "..", "docs");
const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
writeFileSync(join(docs, "configuration.md"), configurationMarkdown());
writeFileSync(join(docs, "job.schema.json"), json(jobJsonSchema()));
writeFileSync(join(docs, "webhook.schema.json"), json(webhookJsonSchema()));
const webhookMd = join(docs, "webhook.md");
writeFileSync(webhookMd, withWebhookFields(readFileSync(webhookMd, "utf8")));
console.log("wrote docs/configuration.md, docs/job.schema.json, docs/webhook.schema.json and the fields of docs/webhook.md");
