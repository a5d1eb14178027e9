import { defineCommand } from "citty";
import { checkJob, displayPath } from "../config/check.ts";
import { loadJobFile } from "../config/load.ts";
import { notificationProblems } from "../notify/index.ts";
import { stateLocation } from "../state/location.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput } from "./output.ts";

export default defineCommand({
  meta: { name: "validate", description: "Check a job file: schema, templates for every batch, regexes, placeholders" },
  args: {
    config: { type: "positional", required: true, description: "Job file (.yaml, .json or .toml)" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const job = await checkJob(await loadJobFile(args.config));
    const c = job.config;
    // Not errors: the job file is valid, but this environment lacks what a channel needs.
    const warnings = notificationProblems(c.notifications, process.env);
    const summary = {
      valid: true,
      file: job.file,
      job_name: c.name,
      total_batches: job.totalBatches,
      batch_size: c.batch.size,
      items: { first: c.batch.start_item, last: c.batch.total_items },
      backend: c.backend.type,
      concurrency: c.concurrency,
      validations: c.validations.length,
      notifications: c.notifications.length,
      state_backend: c.state_backend,
      state_location: stateLocation(c),
      workspace: c.workspace,
      warnings,
    };
    if (out.json) return out.emit(summary);
    for (const w of warnings) out.warn(w);
    out.print(`${out.c.green("✓")} ${displayPath(job.file)} is valid: job ${out.c.bold(c.name)}`);
    out.print(`  batches:       ${job.totalBatches} (${c.batch.size} items each, items ${c.batch.start_item}–${c.batch.total_items})`);
    out.print(`  backend:       ${c.backend.type}${c.concurrency > 1 ? `, ${c.concurrency} at a time` : ""}`);
    out.print(`  validations:   ${c.validations.length}`);
    out.print(`  notifications: ${c.notifications.length}`);
    out.print(`  state:         ${c.state_backend} in ${displayPath(stateLocation(c))}`);
  },
});
