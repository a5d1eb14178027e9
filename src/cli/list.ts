import { defineCommand } from "citty";
import { MozartError } from "../errors.ts";
import { listRegistered, mozartHome } from "../state/registry.ts";
import { openStore } from "../state/store.ts";
import { JOB_STATUSES, type JobStatus } from "../state/types.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput, table } from "./output.ts";
import { effectiveStatus, paintStatus } from "./status-view.ts";

export default defineCommand({
  meta: { name: "list", description: "List jobs known on this machine, newest first" },
  args: {
    status: { type: "string", alias: "s", description: `Only jobs with this status (${JOB_STATUSES.join(", ")})`, valueHint: "STATUS" },
    limit: { type: "string", alias: "l", description: "At most this many jobs (default 20)", valueHint: "N" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const want = args.status?.toLowerCase();
    if (want && !(JOB_STATUSES as readonly string[]).includes(want)) {
      throw new MozartError(`invalid status "${args.status}"`, { exitCode: 2, hint: `use one of ${JOB_STATUSES.join(", ")}` });
    }
    const limit = args.limit === undefined ? 20 : Number(args.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new MozartError(`--limit expects a positive whole number, got "${args.limit}"`, { exitCode: 2 });

    const home = mozartHome(process.env);
    const rows: Array<{ job_id: string; status: JobStatus; completed: number; total: number; updated_at: string; cost_usd: number; config_path: string; state: string }> = [];
    for (const entry of await listRegistered(home)) {
      try {
        const store = await openStore({ kind: entry.state_backend, location: entry.state_location });
        try {
          const rec = await store.getJob(entry.job_id);
          if (!rec) continue;
          rows.push({ job_id: rec.job_id, status: effectiveStatus(rec), completed: rec.completed_batches, total: rec.total_batches, updated_at: rec.updated_at, cost_usd: rec.cost_usd, config_path: rec.config_path, state: entry.state_location });
        } finally {
          await store.close();
        }
      } catch (e) {
        out.detail(`skipping ${entry.job_id}: ${(e as Error).message}`);
      }
    }
    const filtered = rows.filter((r) => !want || r.status === want).sort((a, b) => b.updated_at.localeCompare(a.updated_at));
    const shown = filtered.slice(0, limit);
    if (out.json) return out.emit({ jobs: shown, total: filtered.length });
    if (!shown.length) {
      out.print(want ? `No ${want} jobs.` : "No jobs found.");
      out.info(out.c.dim(`jobs appear here once \`mozart run\` has started them (registry: ${home})`));
      return;
    }
    const lines = table(
      ["Job", "Status", "Progress", "Cost", "Updated"],
      shown.map((r) => [r.job_id, paintStatus(out, r.status), `${r.completed}/${r.total}`, r.cost_usd ? `$${r.cost_usd.toFixed(4)}` : "-", r.updated_at.replace("T", " ").slice(0, 16)]),
      ["l", "l", "r", "r", "l"],
    );
    for (const l of lines) out.print(l);
    out.info(out.c.dim(`${shown.length} of ${filtered.length} job(s)`));
  },
});
