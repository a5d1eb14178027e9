/**
 * Records a run: each step goes to the store as one atomic, fenced write, and only once it
 * landed are its events handed to the run's listeners, with their seq. Attempt output is
 * written twice as it arrives: whole, to the attempt's output file (a kill -9 keeps what came
 * so far), and into the event log in chunks (at most every OUTPUT_FLUSH_MS), up to
 * OUTPUT_LOG_CAP_CHARS per attempt, so `mozart logs -f` shows it live from any terminal.
 */
import { mkdir, open, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { OUTPUT_LOG_CAP_CHARS, type EventPayload } from "../state/events.ts";
import type { StateStore, Step } from "../state/types.ts";
import type { Emitter } from "./events.ts";

export const OUTPUT_FLUSH_MS = 250;
const OUTPUT_FLUSH_CHARS = 32 * 1024;

/** This runner no longer holds the batch (its lease expired and another runner took over). */
export class LeaseLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LeaseLostError";
  }
}

type Stream = "stdout" | "stderr";

interface AttemptOutput {
  batch: number;
  attempt: number;
  fence?: Step["fence"];
  files: Partial<Record<Stream, { path: string; handle: Promise<FileHandle | null>; chain: Promise<void> }>>;
  pending: Record<Stream, string>;
  logged: number;
  truncated: boolean;
  timer?: ReturnType<typeof setTimeout>;
  flushing: Promise<void>;
}

export interface Recorder {
  /** Records a step; throws LeaseLostError when the step was fenced. */
  commit(step: Step): Promise<void>;
  /** Hands events recorded by another write (the run's final step) to the listeners. */
  announce(events: EventPayload[], lastSeq: number, now: number): void;
  /**
   * Output of a running attempt, as it arrives (sync: called from the process's data events).
   * Logged under the batch's fence: a runner that lost the batch logs none of it.
   */
  output(batch: number, attempt: number, stream: Stream, chunk: string, fence?: Step["fence"]): void;
  /** Flushes and closes an attempt's output; returns the stdout file's path if anything was written. */
  endOutput(batch: number, attempt: number): Promise<string | undefined>;
}

export function createRecorder(opts: {
  store: StateStore;
  jobId: string;
  emitter: Emitter;
  /** Wall-clock time for event timestamps and lease checks. */
  wallNow: () => number;
  /** Output that cannot be written (disk full) is reported once here; the run goes on. */
  warn: (message: string) => void;
}): Recorder {
  const { store, jobId, emitter } = opts;
  const outputs = new Map<string, AttemptOutput>();
  const madeDirs = new Set<string>();
  /** Attempts whose output was closed: a chunk arriving late must not reopen (and leak) their files. */
  const ended = new Set<string>();
  let warned = false;

  const record = async (step: Step): Promise<void> => {
    const now = opts.wallNow();
    const r = await store.commit(jobId, step, now);
    if (!r.ok) {
      throw new LeaseLostError(`this runner lost its claim on batch ${step.fence?.batch}: its lease expired and another runner took the batch over`);
    }
    announce(step.events ?? [], r.seq, now);
  };
  const announce = (events: EventPayload[], lastSeq: number, now: number) => {
    const at = new Date(now).toISOString();
    events.forEach((e, i) => emitter.emit({ seq: lastSeq - events.length + 1 + i, at, job_id: jobId, ...e } as Parameters<Emitter["emit"]>[0]));
  };

  const fileFor = (o: AttemptOutput, stream: Stream) => {
    let f = o.files[stream];
    if (!f) {
      const path = store.outputPath(jobId, o.batch, o.attempt, stream);
      // The folder is made once per run (a recursive mkdir per attempt cost milliseconds each);
      // one deleted meanwhile is made again.
      const dir = dirname(path);
      const opened = (madeDirs.has(dir) ? open(path, "a") : Promise.reject(Object.assign(new Error("not made yet"), { code: "ENOENT" }))).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== "ENOENT") throw e;
        return mkdir(dir, { recursive: true }).then(() => {
          madeDirs.add(dir);
          return open(path, "a");
        });
      });
      const handle = opened
        .catch((e: Error) => {
          if (!warned) opts.warn(`cannot keep the attempt output in ${path}: ${e.message}`);
          warned = true;
          return null;
        });
      f = { path, handle, chain: Promise.resolve() };
      o.files[stream] = f;
    }
    return f;
  };

  const flushLog = (o: AttemptOutput): Promise<void> => {
    if (o.timer) clearTimeout(o.timer);
    o.timer = undefined;
    const events: EventPayload[] = [];
    for (const stream of ["stdout", "stderr"] as const) {
      const text = o.pending[stream];
      if (!text) continue;
      o.pending[stream] = "";
      events.push({ type: "output", batch_num: o.batch, attempt: o.attempt, stream, text });
    }
    if (!events.length) return o.flushing;
    o.flushing = o.flushing.then(() =>
      record({ fence: o.fence, events }).catch((e: Error) => {
        // A lost claim is reported by the batch's own next step; its output is in the output file.
        if (e instanceof LeaseLostError) return;
        if (!warned) opts.warn(`cannot record attempt output: ${e.message}`);
        warned = true;
      }),
    );
    return o.flushing;
  };

  return {
    commit: record,
    announce,

    output(batch, attempt, stream, chunk, fence) {
      const id = `${batch}:${attempt}`;
      if (ended.has(id)) return;
      let o = outputs.get(id);
      if (!o) {
        o = { batch, attempt, fence, files: {}, pending: { stdout: "", stderr: "" }, logged: 0, truncated: false, flushing: Promise.resolve() };
        outputs.set(id, o);
      }
      const f = fileFor(o, stream);
      f.chain = f.chain.then(async () => {
        const h = await f.handle;
        if (h) await h.write(chunk).catch(() => {});
      });
      if (o.truncated) return;
      const room = OUTPUT_LOG_CAP_CHARS - o.logged;
      const part = chunk.length > room ? chunk.slice(0, room) : chunk;
      o.logged += part.length;
      o.pending[stream] += part;
      if (part.length < chunk.length) {
        o.truncated = true;
        void flushLog(o).then(() =>
          record({ fence: o!.fence, events: [{ type: "output_truncated", batch_num: batch, attempt, logged_chars: o!.logged, file: f.path }] }).catch(() => {}),
        );
        return;
      }
      if (o.pending.stdout.length + o.pending.stderr.length >= OUTPUT_FLUSH_CHARS) void flushLog(o);
      else o.timer ??= setTimeout(() => void flushLog(o!), OUTPUT_FLUSH_MS);
    },

    async endOutput(batch, attempt) {
      const id = `${batch}:${attempt}`;
      ended.add(id);
      const o = outputs.get(id);
      if (!o) return undefined;
      outputs.delete(id);
      await flushLog(o);
      for (const f of Object.values(o.files)) {
        await f.chain;
        const h = await f.handle;
        await h?.close().catch(() => {});
      }
      return o.files.stdout?.path ?? o.files.stderr?.path;
    },
  };
}
