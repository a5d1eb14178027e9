import { defineCommand } from "citty";
import { checkJob } from "../config/check.ts";
import { loadJobFile } from "../config/load.ts";
import { EXIT, MozartError } from "../errors.ts";
import { shellQuote } from "../text.ts";
import { join } from "node:path";
import { stateFolder } from "../state/location.ts";
import { batchNumber, globalArgs, jsonArg, shardOf } from "./args.ts";
import { dryRun } from "./dry-run.ts";
import { createOutput } from "./output.ts";
import { runFromCli } from "./run-job.ts";

export default defineCommand({
  meta: { name: "run", description: "Run a job: every batch through the backend, validated, retried, resumable" },
  args: {
    config: { type: "positional", required: true, description: "Job file (.yaml, .json or .toml)" },
    "dry-run": { type: "boolean", alias: "n", description: "Show the plan, a rendered prompt, the validations and the backend invocation; run nothing" },
    batch: { type: "string", description: "With --dry-run: the batch whose prompt to show (default 1)", valueHint: "N" },
    "force-config": { type: "boolean", description: "Continue an existing job even though its job file changed" },
    join: { type: "boolean", description: "Add this process to the runners of a running job: they drain it together (starts it if nobody runs it)" },
    "take-over": { type: "boolean", description: "Take the job over from a runner that holds its lease but is gone (another host, frozen)" },
    submit: { type: "boolean", description: "Record the job (its job file and template) in its state for `mozart worker`s to run, and return; runs nothing here" },
    shard: { type: "string", description: "Run only this share of the batches, with its own state: batch b is in shard ((b-1) mod N) + 1 (CI matrices; combine with `mozart merge-state`)", valueHint: "K/N" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    // Flags first: a mistyped flag is a usage error even when the job file is broken too.
    const batch = batchNumber(args.batch);
    const shard = shardOf(args.shard);
    if (batch !== undefined && !args["dry-run"]) throw new MozartError("--batch only applies with --dry-run", { exitCode: EXIT.usage, hint: `show batch ${batch}'s prompt: mozart run ${shellQuote(args.config)} --dry-run --batch ${batch}` });
    const job = await checkJob(await loadJobFile(args.config));
    if (args["dry-run"]) {
      await dryRun(job, out, batch);
      return EXIT.ok;
    }
    if (args.join && args["take-over"]) throw new MozartError("--join and --take-over cannot be combined", { exitCode: EXIT.usage });
    if (args.submit && (args.join || args["take-over"] || shard)) throw new MozartError("--submit cannot be combined with --join, --take-over or --shard", { exitCode: EXIT.usage });
    if (shard) {
      if (args.join || args["take-over"]) throw new MozartError("--shard cannot be combined with --join or --take-over", { exitCode: EXIT.usage });
      if (job.config.state_backend === "postgres") {
        throw new MozartError("--shard splits a job over runners that share no state; this job's state is in Postgres", { exitCode: EXIT.usage, hint: "run `mozart worker --job <id>` on every machine instead: they share the batches through the database" });
      }
      // Each shard keeps its own state, beside the job's, so shards on one machine never meet.
      const folder = join(stateFolder(job.config), "shards", `${shard.index}-of-${shard.count}`);
      const location = job.config.state_backend === "sqlite" ? join(folder, "state.db") : folder;
      return runFromCli(job, out, { command: "run", forceConfig: args["force-config"], selection: { kind: "shard", ...shard }, location });
    }
    return runFromCli(job, out, { command: "run", forceConfig: args["force-config"], join: args.join, takeOver: args["take-over"], submit: args.submit });
  },
});
