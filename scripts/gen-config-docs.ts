/** Regenerates docs/configuration.md and docs/job.schema.json from the zod schema. */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { configurationMarkdown } from "../src/config/docs.ts";
import { jobJsonSchema } from "../src/config/schema.ts";

const docs = join(import.meta.dirname, "..", "docs");
writeFileSync(join(docs, "configuration.md"), configurationMarkdown());
writeFileSync(join(docs, "job.schema.json"), `${JSON.stringify(jobJsonSchema(), null, 2)}\n`);
console.log("wrote docs/configuration.md and docs/job.schema.json");
