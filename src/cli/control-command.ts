/**
 * `mozart pause` and `mozart cancel`: a request written to the job's control record, which every
 * runner of the job (on any machine) reacts to within a second. No signal crosses processes.
 */
import { defineCommand } from "citty";
import { EXIT } from "../errors.ts";
import { requester, steerJob } from "../engine/control.ts";
import { mozartHome } from "../state/registry.ts";
import { jobReport } from "../state/report.ts";
import type { StateStore } from "../state/types.ts";
import { shellQuote } from "../text.ts";
import { sleep } from "../time.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { openJob } from "./find-job.ts";
import { createOutput } from "./output.ts";

export function controlCommand(request: "pause" | "cancel") {
  const description =
    request === "pause"
      ? "Pause a running job from any terminal: nothing new starts, running attempts finish, the runner exits paused"
      : "Cancel a job from any terminal: running attempts stop now and are recorded as interrupted; the job ends cancelled (resumable)";
  return defineCommand({
    meta: { name: request, description },
    args: {
      job: { type: "positional", required: true, description: "Job id (its name) or job file" },
      wait: { type: "boolean", description: "Wait until every runner of the job has stopped" },
      ...jsonArg,
      ...globalArgs,
    },
    async run({ args }) {
      const out = createOutput(args);
      const { store, record } = await openJob(args.job);
      try {
        const id = record.job_id;
        const result = await steerJob(store, record, request, requester("cli"), mozartHome(process.env));
        if (result.kind === "cancelled") {
          if (out.json) out.emit({ job_id: id, request, delivered_to: 0, status: result.status, ...(result.remote ? { message_batches_cancelled: result.remote.asked } : {}) });
          else out.print(`job ${out.c.bold(id)} was not running (${result.was}); it is now cancelled. \`mozart resume ${shellQuote(id)}\` continues it anyway.`);
          if (result.remote?.asked && !out.json) out.print(`asked the API to cancel ${result.remote.asked} Message Batch${result.remote.asked === 1 ? "" : "es"} of the job; a resume collects what finished and submits the rest`);
          if (result.remote?.problem) out.warn(result.remote.problem);
          return EXIT.ok;
        }
        if (result.kind === "not_running") {
          if (out.json) out.emit({ job_id: id, request: null, delivered_to: 0, status: result.status });
          else out.print(`job ${out.c.bold(id)} is not running (${result.status}): nothing to ${request}`);
          return EXIT.ok;
        }
        const runners = result.runners.map((r) => `pid ${r.pid} on ${r.host}`).join(", ");
        if (!out.json) {
          out.print(
            request === "pause"
              ? `asked ${runners} to pause job ${out.c.bold(id)}: nothing new starts, running attempts finish`
              : `asked ${runners} to cancel job ${out.c.bold(id)}: running attempts stop now`,
          );
          if (!args.wait) out.info(out.c.dim(`follow it with: mozart logs ${shellQuote(id)} -f`));
        }
        const status = args.wait ? await waitStopped(store, id) : result.status;
        if (out.json) out.emit({ job_id: id, request, at: result.control.at, delivered_to: result.runners.length, status });
        else if (args.wait) out.print(`job ${out.c.bold(id)} is ${status}`);
        return EXIT.ok;
      } finally {
        await store.close();
      }
    },
  });
}

async function waitStopped(store: StateStore, id: string): Promise<string> {
  for (;;) {
    const rec = await store.getJob(id);
    if (!rec) return "gone";
    const r = await jobReport(store, rec);
    if (!r.runners.length) return r.status;
    await sleep(200);
  }
}
