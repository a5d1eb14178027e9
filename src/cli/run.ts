import { defineCommand } from "citty";
import { checkJob } from "../config/check.ts";
import { loadJobFile } from "../config/load.ts";
import { MozartError } from "../errors.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { dryRun } from "./dry-run.ts";
import { executeJob } from "./execute.ts";
import { createOutput } from "./output.ts";

export default defineCommand({
  meta: { name: "run", description: "Run a job: every batch through the backend, validated, retried, resumable" },
  args: {
    config: { type: "positional", required: true, description: "Job file (.yaml, .json or .toml)" },
    "dry-run": { type: "boolean", alias: "n", description: "Show the plan, a rendered prompt, the validations and the backend invocation; run nothing" },
    batch: { type: "string", description: "With --dry-run: the batch whose prompt to show (default 1)", valueHint: "N" },
    "force-config": { type: "boolean", description: "Continue an existing job even though its job file changed" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const job = await checkJob(await loadJobFile(args.config));
    const batch = args.batch === undefined ? undefined : Number(args.batch);
    if (args.batch !== undefined && !Number.isInteger(batch)) throw new MozartError(`--batch expects a batch number, got "${args.batch}"`, { exitCode: 2 });
    if (args["dry-run"]) return dryRun(job, out, batch);
    if (args.batch !== undefined) throw new MozartError("--batch only applies with --dry-run", { exitCode: 2 });
    process.exitCode = await executeJob({ job, source: job.source, out, command: "run", forceConfig: args["force-config"] });
  },
});
