import { defineCommand } from "citty";
import { access } from "node:fs/promises";
import { checkJob } from "../config/check.ts";
import { loadJobFile, parseJobText } from "../config/load.ts";
import { EXIT, MozartError } from "../errors.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { openJob } from "./find-job.ts";
import { createOutput } from "./output.ts";
import { runFromCli } from "./run-job.ts";

export default defineCommand({
  meta: { name: "resume", description: "Continue a paused, cancelled or failed job; completed batches never run again" },
  args: {
    job: { type: "positional", required: true, description: "Job id (its name) or job file" },
    from: { type: "string", description: "Re-run from batch N onwards, completed or not", valueHint: "N" },
    "retry-failed": { type: "boolean", description: "Re-run only the failed batches" },
    force: { type: "boolean", alias: "f", description: "Start the job over from scratch" },
    "rerun-conflicts": { type: "boolean", description: "isolation: worktree — run the batches that could not be merged again, on the target branch's latest commit (without it, their merge is retried)" },
    "force-config": { type: "boolean", description: "Continue even though the job file changed since the job started" },
    "take-over": { type: "boolean", description: "Take the job over from a runner that holds its lease but is gone (another host, frozen)" },
    budget: {
      type: "string",
      description: "Set the job's budget (budget.max_cost_usd) to USD and continue; kept in the job's state for every later run, until the next --budget",
      valueHint: "USD",
    },
    submit: { type: "boolean", description: "Hand the job back to the `mozart worker`s (a job in a shared database) instead of running it here" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const from = args.from === undefined ? undefined : Number(args.from);
    const budget = args.budget === undefined ? undefined : Number(String(args.budget).replace(/^\$/, ""));
    if (args.budget !== undefined && !(Number.isFinite(budget) && budget! > 0)) throw new MozartError(`--budget expects an amount in USD above 0, e.g. --budget 20, got "${args.budget}"`, { exitCode: EXIT.usage });
    if (args.from !== undefined && !Number.isInteger(from)) throw new MozartError(`--from expects a batch number, got "${args.from}"`, { exitCode: EXIT.usage });
    if ([from !== undefined, args["retry-failed"], args.force].filter(Boolean).length > 1) {
      throw new MozartError("--from, --retry-failed and --force cannot be combined", { exitCode: EXIT.usage });
    }
    const { store, record } = await openJob(args.job, { readOnly: true });
    // The job file as it is now if it still exists (a change is caught by the config hash),
    // else the text saved when the job started.
    const onDisk = await access(record.config_path).then(
      () => true,
      () => false,
    );
    let loaded;
    let savedTemplate: string | undefined;
    try {
      if (onDisk) loaded = await loadJobFile(record.config_path);
      else {
        const source = await store.getBlob(record.source_blob);
        if (source === null) throw new MozartError(`the job file ${record.config_path} is gone and its saved copy is missing from the state`, { hint: "restore the job file" });
        loaded = parseJobText(source, record.config_path);
        out.info(out.c.dim(`job file ${record.config_path} is gone; using the copy saved in the job state`));
      }
      // A template_file that is gone is replaced by the text saved when the job started.
      const file = loaded.config.prompt.template_file;
      if (file && !(await access(file).then(() => true, () => false))) {
        savedTemplate = (await store.getBlob(record.template_blob)) ?? undefined;
        if (savedTemplate !== undefined) out.info(out.c.dim(`template file ${file} is gone; using the copy saved in the job state`));
      }
    } finally {
      await store.close();
    }
    if (loaded.config.name !== record.job_id) {
      throw new MozartError(`the job file ${record.config_path} now names job "${loaded.config.name}", not "${record.job_id}"`, {
        exitCode: EXIT.usage,
        hint: "restore the name, or run the renamed file as a new job with `mozart run`",
      });
    }
    const job = await checkJob(loaded, { savedTemplate });
    out.info(`resuming job ${out.c.bold(record.job_id)}`);
    return runFromCli(job, out, {
      command: "resume",
      forceConfig: args["force-config"],
      takeOver: args["take-over"],
      ...(from !== undefined ? { from } : {}),
      retryFailed: args["retry-failed"],
      force: args.force,
      ...(budget !== undefined ? { budget } : {}),
      rerunConflicts: args["rerun-conflicts"],
      submit: args.submit,
    });
  },
});
