import { defineCommand } from "citty";
import { EXIT, MozartError } from "../errors.ts";
import { accountHoldView, listAccountHolds } from "../state/accounts.ts";
import { databaseEntries, sharedDatabase } from "../state/database.ts";
import { jobRow, unreadableRow, type JobRow } from "../state/jobs.ts";
import { mozartHome, readRegistry } from "../state/registry.ts";
import { JOB_STATUSES } from "../state/types.ts";
import { formatTime } from "../time.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput, table } from "./output.ts";
import { describeAccountHold, describeRequester, paintStatus } from "./status-view.ts";

export default defineCommand({
  meta: { name: "list", description: "List jobs known on this machine (and in the database of MOZART_DATABASE_URL, when set), newest first" },
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
      throw new MozartError(`invalid status "${args.status}"`, { exitCode: EXIT.usage, hint: `use one of ${JOB_STATUSES.join(", ")}` });
    }
    const limit = args.limit === undefined ? 20 : Number(args.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new MozartError(`--limit expects a positive whole number, got "${args.limit}"`, { exitCode: EXIT.usage });

    const home = mozartHome(process.env);
    const { entries, unreadable } = await readRegistry(home);
    const rows: JobRow[] = [];
    for (const entry of entries) rows.push(await jobRow(entry));
    for (const u of unreadable) rows.push(unreadableRow({ job_id: u.file, updated_at: "", config_path: "", state: u.file }, u.reason));
    // Jobs in the shared database that this machine never ran (workers, other machines' runs).
    const db = sharedDatabase(process.env);
    if (db) {
      const known = new Set(entries.map((e) => e.job_id));
      try {
        for (const entry of await databaseEntries(process.env)) if (!known.has(entry.job_id)) rows.push(await jobRow(entry));
      } catch (e) {
        if (!/there is no state/.test((e as Error).message)) rows.push(unreadableRow({ job_id: db, updated_at: "", config_path: "", state: db }, (e as Error).message));
      }
      rows.sort((a, b) => (a.updated_at === b.updated_at ? 0 : a.updated_at < b.updated_at ? 1 : -1));
    }
    const filtered = rows.filter((r) => !want || r.status === want);
    const shown = filtered.slice(0, limit);
    // The quota guard: an account's hold stops every job on that account, whichever job met it.
    const holds = await listAccountHolds(home, Date.now());
    const heldBy = (r: JobRow) => holds.find((h) => h.account === r.account);
    if (out.json) {
      const jobs = shown.map((r) => {
        const h = heldBy(r);
        return h ? { ...r, account_hold: accountHoldView(h) } : r;
      });
      out.emit({ jobs, total: filtered.length, account_holds: holds.map(accountHoldView) });
      return EXIT.ok;
    }
    for (const h of holds) out.print(out.c.yellow(describeAccountHold(h)));
    if (!shown.length) {
      if (holds.length) out.print();
      out.print(want ? `No ${want} jobs.` : "No jobs found.");
      out.info(out.c.dim(`jobs appear here once \`mozart run\` has started them (registry: ${home})`));
      return EXIT.ok;
    }
    const lines = table(
      ["Job", "Status", "Progress", "Cost", "Updated"],
      shown.map((r) => [r.job_id, heldBy(r) && r.status === "running" ? `${paintStatus(out, r.status)} ${out.c.yellow("(held)")}` : paintStatus(out, r.status), r.total ? `${r.completed}/${r.total}` : "-", r.cost_usd ? `$${r.cost_usd.toFixed(4)}` : "-", r.updated_at.replace("T", " ").slice(0, 16)]),
      ["l", "l", "r", "r", "l"],
    );
    if (holds.length) out.print();
    for (const l of lines) out.print(l);
    for (const r of shown) if (r.error) out.print(out.c.red(`  ${r.job_id}: ${r.error}`));
    for (const r of shown) if (r.conflict) out.print(out.c.red(`  ${r.job_id}: ${r.conflict} batch${r.conflict === 1 ? "" : "es"} could not be merged (conflict): mozart status ${r.job_id}`));
    for (const r of shown) {
      const h = heldBy(r);
      if (h && (r.status === "running" || r.status === "paused" || r.status === "pending")) out.print(out.c.yellow(`  ${r.job_id}: starts no batch before ${formatTime(h.until)} (its account's hold${h.job_id === r.job_id ? "" : `, met by ${h.job_id}`})`));
    }
    for (const r of shown) if (r.stopped_by && (r.status === "paused" || r.status === "cancelled")) out.print(out.c.dim(`  ${r.job_id}: ${r.status} by ${describeRequester(r.stopped_by)}`));
    out.info(out.c.dim(`${shown.length} of ${filtered.length} job(s)`));
    return EXIT.ok;
  },
});
