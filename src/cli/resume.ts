import { defineCommand } from "citty";
import { access } from "node:fs/promises";
import { checkJob } from "../config/check.ts";
import { loadJobFile, parseJobText } from "../config/load.ts";
import { EXIT, MozartError } from "../errors.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { executeJob } from "./execute.ts";
import { openJob } from "./find-job.ts";
import { createOutput } from "./output.ts";
import { effectiveStatus } from "./status-view.ts";

export default defineCommand({
  meta: { name: "resume", description: "Continue a paused or failed job; completed batches never run again" },
  args: {
    job: { type: "positional", required: true, description: "Job id (its name) or job file" },
    from: { type: "string", description: "Re-run from batch N onwards, completed or not", valueHint: "N" },
    "retry-failed": { type: "boolean", description: "Re-run only the failed batches" },
    force: { type: "boolean", alias: "f", description: "Restart a completed job from scratch" },
    "force-config": { type: "boolean", description: "Continue even though the job file changed since the job started" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const from = args.from === undefined ? undefined : Number(args.from);
    if (args.from !== undefined && !Number.isInteger(from)) throw new MozartError(`--from expects a batch number, got "${args.from}"`, { exitCode: EXIT.usage });
    if ([from !== undefined, args["retry-failed"], args.force].filter(Boolean).length > 1) {
      throw new MozartError("--from, --retry-failed and --force cannot be combined", { exitCode: EXIT.usage });
    }
    const { store, record } = await openJob(args.job);
    await store.close();
    const status = effectiveStatus(record);
    if (status === "completed" && !args.force && from === undefined) {
      throw new MozartError(`job "${record.job_id}" is already completed (${record.completed_batches}/${record.total_batches} batches)`, {
        hint: `to run it again from scratch: mozart resume ${record.job_id} --force; to redo some batches: --from N`,
      });
    }
    // The job file as it is now if it still exists (a change is caught by the config hash),
    // else the text saved when the job started.
    const onDisk = await access(record.config_path).then(
      () => true,
      () => false,
    );
    const loaded = onDisk ? await loadJobFile(record.config_path) : parseJobText(record.config_source, record.config_path);
    if (!onDisk) out.info(out.c.dim(`job file ${record.config_path} is gone; using the copy saved in the job state`));
    if (loaded.config.name !== record.job_id) {
      throw new MozartError(`the job file ${record.config_path} now names job "${loaded.config.name}", not "${record.job_id}"`, {
        exitCode: EXIT.usage,
        hint: "restore the name, or run the renamed file as a new job with `mozart run`",
      });
    }
    const job = await checkJob(loaded);
    out.info(`resuming job ${out.c.bold(record.job_id)} (${status}, ${record.completed_batches}/${record.total_batches} batches done)`);
    process.exitCode = await executeJob({
      job,
      source: loaded.source,
      out,
      command: "resume",
      forceConfig: args["force-config"],
      ...(from !== undefined ? { from } : {}),
      retryFailed: args["retry-failed"],
      force: args.force,
    });
  },
});
