import { defineCommand } from "citty";
import { EXIT, MozartError } from "../errors.ts";
import { findJob, mozartHome, unregisterJob } from "../state/registry.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput } from "./output.ts";

export default defineCommand({
  meta: { name: "forget", description: "Remove a job from this machine's registry (its state and workspace are left as they are)" },
  args: {
    job: { type: "positional", required: true, description: "Job id (its name)" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const home = mozartHome(process.env);
    const entry = await findJob(home, args.job).catch(() => null);
    if (!(await unregisterJob(home, args.job))) throw new MozartError(`job not found: ${args.job}`, { hint: "`mozart list` shows the registered jobs" });
    if (out.json) out.emit({ job_id: args.job, forgotten: true, state_location: entry?.state_location ?? null });
    else out.print(`forgot job ${out.c.bold(args.job)}${entry ? `; its state stays in ${entry.state_location}` : ""}`);
    return EXIT.ok;
  },
});
