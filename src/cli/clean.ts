import { defineCommand } from "citty";
import { cleanWorktrees } from "../engine/worktrees.ts";
import { EXIT, MozartError } from "../errors.ts";
import { shellQuote } from "../text.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { openJob } from "./find-job.ts";
import { createOutput } from "./output.ts";

export default defineCommand({
  meta: {
    name: "clean",
    description: "Remove a job's batch worktrees (isolation: worktree); branches holding work not yet merged are kept",
  },
  args: {
    job: { type: "positional", required: true, description: "Job id (its name) or job file" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const { store, record } = await openJob(args.job, { readOnly: true });
    try {
      if (!record.git) throw new MozartError(`job "${record.job_id}" does not run in worktrees (isolation: none): there is nothing to clean`, { exitCode: EXIT.usage });
      const live = await store.runners(record.job_id, Date.now());
      if (live.length) {
        const r = live[0]!;
        throw new MozartError(`job "${record.job_id}" is running (pid ${r.pid} on ${r.host}): its worktrees are in use`, { hint: `pause it first: mozart pause ${shellQuote(record.job_id)} --wait` });
      }
      const done = await cleanWorktrees(record, store, process.env).catch((e: Error) => {
        throw new MozartError(`cannot clean the worktrees of job "${record.job_id}": ${e.message}`);
      });
      if (out.json) out.emit({ job_id: record.job_id, ...done });
      else {
        out.print(`${out.c.green("✓")} removed ${done.removed.length} worktree${done.removed.length === 1 ? "" : "s"} of job ${out.c.bold(record.job_id)}${done.deleted_branches.length ? `, and ${done.deleted_branches.length} branch${done.deleted_branches.length === 1 ? "" : "es"} with nothing left to land` : ""}`);
        if (done.kept_branches.length) {
          out.info(`kept the branches of work not merged yet: ${done.kept_branches.join(", ")}`);
          out.info(out.c.dim(`mozart resume ${shellQuote(record.job_id)} lands them (their worktrees are made again as needed)`));
        }
      }
      return EXIT.ok;
    } finally {
      await store.close();
    }
  },
});
