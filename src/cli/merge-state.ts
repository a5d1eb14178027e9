/**
 * `mozart merge-state <dirs…>`: the states of a job's shards (`run --shard k/n`, one per CI
 * matrix runner) combined into one job, so `status` and `list` show the whole job. Each batch
 * keeps the best record any shard has of it (completed over failed over unfinished) with its
 * attempts and their output files; the event logs are interleaved by time; the job's status is
 * derived from the merged batches. Everything goes through the state interface, so shards and
 * the merged state may use any local backend.
 */
import { defineCommand } from "citty";
import { copyFile, mkdir, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { EXIT, MozartError } from "../errors.ts";
import type { EventPayload, StoredEvent } from "../state/events.ts";
import { stateLocation } from "../state/location.ts";
import { mozartHome, registerJob } from "../state/registry.ts";
import { jobReport } from "../state/report.ts";
import { openStore } from "../state/store.ts";
import type { BatchRecord, JobRecord, JobStatus, StateBackend, StateStore } from "../state/types.ts";
import { shellQuote } from "../text.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput } from "./output.ts";

export default defineCommand({
  meta: { name: "merge-state", description: "Combine the states of a job's shards (run --shard k/n) into one job for status and list" },
  args: {
    dirs: { type: "positional", required: true, description: "The shards' state folders (each holding state.db, or a json state)", valueHint: "DIR..." },
    into: { type: "string", description: "Where the merged state goes (default: the job's own state folder, from its job file)", valueHint: "DIR" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const dirs = [...new Set((args._ as string[]).map((d) => resolve(d)))];
    const shards: Array<{ dir: string; store: StateStore; rec: JobRecord }> = [];
    let target: StateStore | undefined;
    try {
      for (const dir of dirs) {
        const { kind, location } = await detect(dir);
        const store = await openStore({ kind, location, readOnly: true });
        const ids = await store.listJobIds();
        if (ids.length !== 1) {
          await store.close();
          throw new MozartError(`${dir} holds ${ids.length ? `${ids.length} jobs (${ids.slice(0, 3).join(", ")})` : "no job"}: a shard's state holds exactly one`, { exitCode: EXIT.usage, hint: "pass the folders that `mozart run --shard K/N` wrote (<state folder>/shards/K-of-N)" });
        }
        shards.push({ dir, store, rec: (await store.getJob(ids[0]!))! });
      }
      const first = shards[0]!.rec;
      for (const s of shards) {
        if (s.rec.job_id !== first.job_id) throw new MozartError(`${s.dir} is a shard of job "${s.rec.job_id}", ${shards[0]!.dir} of "${first.job_id}"`, { exitCode: EXIT.usage });
        if (s.rec.config_hash !== first.config_hash || s.rec.total_batches !== first.total_batches) {
          throw new MozartError(`the shards ran different job files (config ${first.config_hash} in ${shards[0]!.dir}, ${s.rec.config_hash} in ${s.dir})`, { exitCode: EXIT.usage, hint: "merge only shards of one run of one job file" });
        }
      }
      const kind = shards[0]!.store.kind;
      const config = JSON.parse((await shards[0]!.store.getBlob(first.config_blob)) ?? "{}") as { state_path?: string; workspace?: string; state_backend?: StateBackend };
      const folder = args.into ? resolve(args.into) : config.state_path ?? join(first.workspace, ".mozart");
      const location = stateLocation({ state_backend: kind, state_path: folder, workspace: first.workspace });
      target = await openStore({ kind, location });
      if (await target.getJob(first.job_id)) {
        throw new MozartError(`${target.location} already holds job "${first.job_id}"`, { exitCode: EXIT.usage, hint: "merge into a new folder with --into DIR, or move that state aside" });
      }

      // Blobs the records refer to: the job's texts and every attempt's prompt.
      const copied = new Set<string>();
      const copyBlob = async (from: StateStore, hash: string) => {
        if (!hash || copied.has(hash)) return;
        const text = await from.getBlob(hash);
        if (text !== null) await target!.putBlob(text);
        copied.add(hash);
      };
      for (const h of [first.config_blob, first.source_blob, first.template_blob]) await copyBlob(shards[0]!.store, h);

      let completed = 0;
      let failed: BatchRecord | undefined;
      let completedAt = "";
      for (let n = 1; n <= first.total_batches; n++) {
        let best: { b: BatchRecord; from: StateStore } | undefined;
        for (const s of shards) {
          const b = await s.store.getBatch(first.job_id, n);
          if (b && !b.damaged && (!best || rank(b) > rank(best.b))) best = { b, from: s.store };
        }
        if (!best) continue;
        const b: BatchRecord = { ...best.b, owner: null, running: null, ...(best.b.status === "in_progress" ? { status: "pending" as const } : {}) };
        if (b.status === "completed") {
          completed++;
          if ((b.completed_at ?? "") > completedAt) completedAt = b.completed_at ?? "";
        }
        if (b.status === "failed") failed ??= b;
        await target.putBatch(first.job_id, b);
        for (const a of await best.from.listAttempts(first.job_id, n)) {
          await copyBlob(best.from, a.prompt_blob);
          let outputFile = a.output_file;
          for (const stream of ["stdout", "stderr"] as const) {
            const src = best.from.outputPath(first.job_id, n, a.attempt, stream);
            if (!(await stat(src).then((x) => x.isFile(), () => false))) continue;
            const dst = target.outputPath(first.job_id, n, a.attempt, stream);
            await mkdir(dirname(dst), { recursive: true });
            await copyFile(src, dst);
            if (stream === "stdout" || !outputFile) outputFile = stream === "stdout" ? dst : outputFile;
          }
          await target.commit(first.job_id, { attempt: { ...a, ...(outputFile ? { output_file: outputFile } : {}) } }, Date.now());
        }
      }

      // The event logs, interleaved by time (each keeps its own order), under new seq numbers.
      const logs: StoredEvent[][] = [];
      for (const s of shards) logs.push(await s.store.readEvents(first.job_id));
      const merged = logs.flatMap((events, shard) => events.map((e, i) => ({ e, shard, i }))).sort((x, y) => (x.e.at === y.e.at ? x.shard - y.shard || x.i - y.i : x.e.at < y.e.at ? -1 : 1));
      for (let i = 0; i < merged.length; i += 500) {
        // Each event keeps its own time: a payload's `at` wins over the time of this write.
        const events = merged.slice(i, i + 500).map(({ e }) => {
          const { seq: _seq, job_id: _job, ...payload } = e;
          return payload as EventPayload;
        });
        await target.commit(first.job_id, { events }, Date.now());
      }

      const status: JobStatus = completed >= first.total_batches ? "completed" : failed ? "failed" : "paused";
      const rec: JobRecord = {
        ...first,
        status,
        updated_at: new Date().toISOString(),
        ...(status === "completed" ? { completed_at: completedAt || new Date().toISOString() } : {}),
        ...(failed ? { error: `batch ${failed.batch_num}: ${failed.error?.message ?? "failed"}` } : {}),
      };
      delete rec.run;
      delete rec.stopped_by;
      if (status !== "completed") delete rec.completed_at;
      if (!failed) delete rec.error;
      await target.putJob(rec);
      const report = await jobReport(target, rec);
      await registerJob(mozartHome(process.env), {
        job_id: rec.job_id,
        state_backend: kind,
        state_location: target.location,
        config_path: rec.config_path,
        workspace: rec.workspace,
        snapshot: { status: report.status, completed: report.progress.completed, total: report.progress.total, cost_usd: report.cost_usd },
      }).catch((e: Error) => out.warn(`could not register the job (${e.message}); find it with its job file instead`));

      if (out.json) out.emit({ job_id: rec.job_id, shards: dirs.length, into: target.location, status: report.status, progress: report.progress });
      else {
        out.print(`merged ${dirs.length} shard${dirs.length === 1 ? "" : "s"} of job ${out.c.bold(rec.job_id)} into ${target.location}: ${report.progress.completed}/${report.progress.total} batches completed (${report.status})`);
        if (report.progress.pending) out.print(out.c.dim(`  ${report.progress.pending} batches have no completed record in any shard: mozart resume ${shellQuote(rec.job_id)} runs them`));
      }
      return report.status === "completed" ? EXIT.ok : report.status === "failed" ? EXIT.failed : EXIT.ok;
    } finally {
      for (const s of shards) await s.store.close().catch(() => {});
      await target?.close().catch(() => {});
    }
  },
});

/** Which of two records of one batch to keep. */
function rank(b: BatchRecord): number {
  const base = b.status === "completed" ? 3 : b.status === "failed" ? 2 : 1;
  return base * 1e6 + Math.min(b.attempts, 999_999);
}

/** A shard's state folder: state.db inside (sqlite), the file itself, or a json state. */
async function detect(dir: string): Promise<{ kind: StateBackend; location: string }> {
  const s = await stat(dir).catch(() => null);
  if (!s) throw new MozartError(`${dir} does not exist`, { exitCode: EXIT.usage });
  if (s.isFile()) return { kind: "sqlite", location: dir };
  if (await stat(join(dir, "state.db")).then((x) => x.isFile(), () => false)) return { kind: "sqlite", location: join(dir, "state.db") };
  if (await stat(join(dir, "jobs")).then((x) => x.isDirectory(), () => false)) return { kind: "json", location: dir };
  throw new MozartError(`${dir} holds no Mozart state (no state.db, no jobs/ folder)`, { exitCode: EXIT.usage, hint: "pass the folders that `mozart run --shard K/N` wrote (<state folder>/shards/K-of-N)" });
}
