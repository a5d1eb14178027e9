/**
 * The `anthropic_batch` backend: the Message Batches API, at half the price, for jobs that need
 * no tools. The engine keeps every pending batch in flight at once (`inFlight`); each attempt's
 * execute() adds its request to the next submission, and the requests gathered are submitted
 * together: one create call per `requests_per_batch` requests (and per 256 MB), once the engine
 * has nothing more to start (`idle()`) or after a quiet moment.
 *
 * Durability: the Message Batch is recorded in the job's store (the custom_id of every request,
 * and which batch and attempt it is) before the create call, and again with its id once the call
 * answered, before any waiting. A run that stops waiting (Ctrl+C, a kill, `mozart cancel`, a
 * crash) leaves its attempts `detached`; the next run re-attaches to them by key and custom_id
 * (ExecutionRequest.reattach), so nothing already submitted is ever submitted again. A record
 * still `submitting` (a crash between the create call and its answer being recorded) is matched
 * with the Message Batches the API lists: one created in that moment with as many requests.
 *
 * Polling: one poller per Message Batch with waiting attempts, from poll_interval_seconds,
 * growing by half up to max_poll_interval_seconds; every change of its counts is recorded (the
 * record and a `remote_batch` event), which `status`, `logs` and the dashboard show. Once it has
 * ended, its results are read as JSONL and handed to the waiting attempts by custom_id: answers
 * are written to `output_path` and validated as usual; errored and expired requests come back as
 * failed attempts, which the retry policy submits again.
 */
import { randomBytes } from "node:crypto";
import type Anthropic from "@anthropic-ai/sdk";
import type { AnthropicBatchConfig } from "../config/schema.ts";
import { MAX_TIMER_MS } from "../runtime/process.ts";
import type { RemoteBatch, RemoteBatchCounts } from "../state/types.ts";
import { sleep } from "../time.ts";
import { baseUrlOf, clientFor, errorResult, fromSdkError, loadSdk, maxTokensFor, messageParams, missingKey, spendOf, textOf, writeAnswer } from "./anthropic-api.ts";
import { setupFailure } from "./command.ts";
import { tokensFromUsage } from "./prices.ts";
import type { Backend, BackendContext, ExecutionRequest, ExecutionResult, HttpFacts } from "./types.ts";

/** The API takes at most 256 MB per Message Batch; submissions stay well under it. */
const MAX_SUBMIT_BYTES = 200 * 1024 * 1024;
/** Requests gathered are submitted once no new one arrived for this long (the engine's idle() usually comes first)... */
const QUIET_MS = 1000;
/** ...or this long once the engine said it has nothing more to start (retries waking together still go in one). */
const IDLE_MS = 100;
/** Results stay available for 29 days after a Message Batch was created. */
const RESULTS_KEPT_MS = 29 * 24 * 3_600_000;
/** A record left `submitting` is matched with a Message Batch created within this long of it. */
const ADOPT_WINDOW_MS = 10 * 60_000;

type Outcome = ExecutionResult;

interface Waiter {
  req: ExecutionRequest;
  custom_id: string;
  resolve(r: Outcome): void;
  /** Its result is in and being handed over: a stop no longer detaches it. */
  collecting?: boolean;
}

/** A request waiting to be submitted, with its waiter (the same object the attempt's stop handlers see). */
interface Gathered {
  w: Waiter;
  params: Anthropic.MessageCreateParamsNonStreaming;
  bytes: number;
}

interface Watch {
  rb: RemoteBatch;
  waiters: Map<string, Waiter>;
  polling: boolean;
  /** Re-attached from an earlier run: look at it at once rather than after a poll interval. */
  reattached: boolean;
  /** When the latest waiter attached: results are read once attaching has settled. */
  lastAttach: number;
  /** Wakes the poller early (a new waiter, a cancel). */
  wake?: AbortController;
}

const customId = (n: number, attempt: number) => `b${n}-a${attempt}-${randomBytes(3).toString("hex")}`;
const iso = (ms = Date.now()) => new Date(ms).toISOString();

export function createAnthropicBatchBackend(config: AnthropicBatchConfig, ctx: BackendContext): Backend {
  const client = clientFor(config, ctx);
  const base = baseUrlOf(config, ctx);
  const argvFor = (id = "<new>") => ["POST", `${base}/v1/messages/batches`, `model=${config.model}`, `max_tokens=${config.max_tokens}`, `message_batch=${id}`];
  const remote = ctx.remote;
  const gathering: Gathered[] = [];
  const watches = new Map<string, Watch>();
  let known: Promise<Map<string, RemoteBatch>> | undefined;
  let quiet: ReturnType<typeof setTimeout> | undefined;
  let submitting = Promise.resolve();
  /** The engine said it has nothing more to start: re-attached waiters are all there. */
  let settled = false;

  const save = async (rb: RemoteBatch, announce = true) => {
    rb.updated_at = iso();
    if (!remote) return;
    await remote.store.putRemoteBatch(remote.jobId, rb);
    if (announce) await remote.event({ type: "remote_batch", key: rb.key, ...(rb.id ? { id: rb.id } : {}), status: rb.status, ...(rb.counts ? { counts: { ...rb.counts } } : {}), requests: rb.items.length, ...(rb.error ? { error: rb.error } : {}) });
  };
  const warn = (m: string) => remote?.warn(m);

  /** The Message Batches recorded by earlier runs, by key (read once). */
  const recorded = () => (known ??= remote ? remote.store.listRemoteBatches(remote.jobId).then((list) => new Map(list.map((rb) => [rb.key, rb]))) : Promise.resolve(new Map()));

  const result = (w: Waiter, started: number, fields: Partial<ExecutionResult>, rb: RemoteBatch): Outcome => ({
    ...errorResult(w.req, argvFor(rb.id), started, "", {}),
    remote: { key: rb.key, ...(rb.id ? { id: rb.id } : {}), custom_id: w.custom_id },
    ...fields,
  });

  // --- Submitting -----------------------------------------------------------------------------
  const scheduleSubmit = () => {
    clearTimeout(quiet);
    quiet = setTimeout(() => void submitNow(), settled ? IDLE_MS : QUIET_MS);
  };
  const submitNow = () => {
    clearTimeout(quiet);
    submitting = submitting.then(async () => {
      while (gathering.length) {
        const chunk: Gathered[] = [];
        let bytes = 0;
        while (gathering.length && chunk.length < config.requests_per_batch && bytes + gathering[0]!.bytes <= MAX_SUBMIT_BYTES) {
          const g = gathering.shift()!;
          chunk.push(g);
          bytes += g.bytes;
        }
        // A single request over the limit goes alone, for the API to refuse with its own words.
        if (!chunk.length) chunk.push(gathering.shift()!);
        await submit(chunk);
      }
    });
    return submitting;
  };

  const submit = async (chunk: Gathered[]) => {
    const started = Date.now();
    const rb: RemoteBatch = {
      key: `mb-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`,
      provider: "anthropic",
      status: "submitting",
      runner: remote?.runnerId ?? "",
      submitted_at: iso(started),
      updated_at: iso(started),
      items: chunk.map(({ w }) => ({ custom_id: w.custom_id, batch_num: w.req.batch.batch_num, attempt: w.req.attempt })),
    };
    const watch: Watch = { rb, waiters: new Map(chunk.map(({ w }) => [w.custom_id, w])), polling: false, reattached: false, lastAttach: 0 };
    const failAll = (fields: Partial<ExecutionResult>) => {
      for (const w of watch.waiters.values()) w.resolve(result(w, started, fields, rb));
      watch.waiters.clear();
    };
    try {
      // Checkpointed before the call: a crash in the next moment leaves a record a restart can match.
      await save(rb, false);
    } catch (e) {
      return failAll({ stderr: `cannot record the Message Batch before submitting it: ${(e as Error).message}` });
    }
    // Known from here on: an attempt that stops waiting during the create call leaves it properly.
    watches.set(rb.key, watch);
    const api = (await client())!;
    const signal = new AbortController().signal;
    await chunk[0]!.w.req.beforeRequest?.(signal);
    if (!watch.waiters.size) {
      // Every attempt stopped waiting during a hold: nothing is sent.
      rb.status = "failed";
      rb.error = "not submitted: the run stopped first";
      watches.delete(rb.key);
      return void (await save(rb, false).catch(() => {}));
    }
    try {
      const created = await api.messages.batches.create({ requests: chunk.map((g) => ({ custom_id: g.w.custom_id, params: g.params })) }, { timeout: 10 * 60_000 });
      applyView(rb, created);
    } catch (e) {
      const r = fromSdkError(e, chunk[0]!.w.req, argvFor(), started, signal, config.api_key_env);
      const answered = r.http?.status !== undefined;
      const adopted = answered ? undefined : await adopt(rb).catch(() => undefined);
      if (!adopted) {
        rb.status = "failed";
        rb.error = r.stderr.split("\n").pop() ?? r.stderr;
        await save(rb).catch((err: Error) => warn(`cannot record the failed Message Batch ${rb.key}: ${err.message}`));
        return failAll({ stderr: r.stderr, ...(r.http ? { http: r.http } : {}), timed_out: r.timed_out });
      }
    }
    try {
      await save(rb);
    } catch (e) {
      warn(`Message Batch ${rb.id} was created but could not be recorded (${(e as Error).message}); a restart would not find it`);
    }
    void poll(watch);
  };

  const applyView = (rb: RemoteBatch, v: Anthropic.Messages.MessageBatch) => {
    rb.id = v.id;
    rb.status = v.processing_status;
    rb.created_at = v.created_at;
    rb.expires_at = v.expires_at;
    if (v.ended_at) rb.ended_at = v.ended_at;
    rb.counts = { ...(v.request_counts as RemoteBatchCounts) };
  };

  /**
   * A record left `submitting`: was the Message Batch created after all? One created within a few
   * minutes of the record, with as many requests, that no other record claims, is taken for it.
   */
  const adopt = async (rb: RemoteBatch): Promise<RemoteBatch | undefined> => {
    const api = await client();
    if (!api) return undefined;
    const claimed = new Set([...(await recorded()).values(), ...[...watches.values()].map((w) => w.rb)].map((r) => r.id).filter(Boolean));
    const at = Date.parse(rb.submitted_at);
    const page = await api.messages.batches.list({ limit: 100 });
    for (const v of page.data) {
      const c = v.request_counts;
      const total = c.processing + c.succeeded + c.errored + c.canceled + c.expired;
      const created = Date.parse(v.created_at);
      if (claimed.has(v.id) || total !== rb.items.length || created < at - 5000 || created > at + ADOPT_WINDOW_MS) continue;
      applyView(rb, v);
      return rb;
    }
    return undefined;
  };

  // --- Waiting --------------------------------------------------------------------------------
  const poll = async (watch: Watch) => {
    if (watch.polling) return;
    watch.polling = true;
    const api = (await client())!;
    let interval = config.poll_interval_seconds * 1000;
    let look = watch.reattached;
    try {
      while (watch.waiters.size) {
        if (watch.rb.status !== "ended" && !look) {
          watch.wake = new AbortController();
          await sleep(interval, watch.wake.signal);
          if (!watch.waiters.size) break;
          interval = Math.min(interval * 1.5, config.max_poll_interval_seconds * 1000);
        }
        look = false;
        const first = watch.waiters.values().next().value as Waiter | undefined;
        await first?.req.beforeRequest?.(new AbortController().signal);
        try {
          if (watch.rb.status !== "ended") {
            const before = JSON.stringify([watch.rb.status, watch.rb.counts]);
            applyView(watch.rb, await api.messages.batches.retrieve(watch.rb.id!));
            if (JSON.stringify([watch.rb.status, watch.rb.counts]) !== before) await save(watch.rb).catch((e: Error) => warn(`cannot record the progress of Message Batch ${watch.rb.id}: ${e.message}`));
          }
          if (watch.rb.status === "ended") {
            // Attempts re-attaching one after another: read the results once they are all there.
            while (!settled && Date.now() - watch.lastAttach < 500) await sleep(100);
            await collect(watch);
          }
        } catch (e) {
          const r = fromSdkError(e, first?.req ?? { cwd: "", timeoutMs: 0 }, argvFor(watch.rb.id), Date.now(), new AbortController().signal, config.api_key_env);
          // Gone for good (deleted, results expired): the waiting attempts fail, to be submitted again.
          if (r.http?.status === 404 || (r.http?.status !== undefined && r.http.status >= 400 && r.http.status < 500 && r.http.status !== 429)) {
            for (const w of watch.waiters.values()) w.resolve(result(w, Date.now(), { stderr: r.stderr, http: r.http! }, watch.rb));
            watch.waiters.clear();
            break;
          }
          // A 429 or an outage while polling or reading the results: wait as long as asked, then look again.
          if (r.http?.retry_after_ms !== undefined) interval = Math.max(interval, r.http.retry_after_ms);
          warn(`looking at Message Batch ${watch.rb.id} failed (${r.stderr.split("\n").pop()}); trying again in ${Math.round(interval / 1000)}s`);
          if (watch.rb.status === "ended") {
            watch.wake = new AbortController();
            await sleep(interval, watch.wake.signal);
          }
        }
      }
    } finally {
      watch.polling = false;
    }
  };

  /** Reads the results and hands each waiting attempt its own; attempts that attach later trigger another read. */
  const collect = async (watch: Watch) => {
    const api = (await client())!;
    // The results are in: the attempts waiting for them get them, even if the run stops meanwhile.
    for (const w of watch.waiters.values()) w.collecting = true;
    const decoder = await api.messages.batches.results(watch.rb.id!);
    for await (const line of decoder) {
      const w = watch.waiters.get(line.custom_id);
      if (!w) continue;
      watch.waiters.delete(line.custom_id);
      w.collecting = true;
      w.resolve(await outcomeOf(w, line.result, watch.rb));
    }
    // Asked for, but not in the results: the API lost it; it is submitted again.
    for (const w of watch.waiters.values()) w.resolve(result(w, Date.now(), { stderr: `request ${w.custom_id} is missing from the results of Message Batch ${watch.rb.id}`, http: { status: 500, error_type: "api_error" } }, watch.rb));
    watch.waiters.clear();
  };

  const outcomeOf = async (w: Waiter, r: Anthropic.Messages.MessageBatchResult, rb: RemoteBatch): Promise<Outcome> => {
    const started = Date.now();
    if (r.type === "succeeded") {
      const m = r.message;
      const text = textOf(m.content);
      w.req.onOutput?.("stdout", text);
      const spend = spendOf(config.model, tokensFromUsage(m.usage as unknown as Record<string, unknown>, config.cache_ttl), 1, { batch: true });
      const base = { ...result(w, started, {}, rb), stdout: text, text, spend, cost_usd: spend.usd };
      if (m.stop_reason === "max_tokens") {
        return { ...base, stderr: `the answer was cut off at max_tokens (${config.max_tokens}): raise backend.max_tokens`, http: { status: 200, stop_reason: "max_tokens" } };
      }
      if (m.stop_reason === "refusal") return { ...base, stderr: "the model declined to answer (stop_reason: refusal)", http: { status: 200, stop_reason: "refusal" } };
      const problem = await writeAnswer(w.req.output_path, text);
      if (problem) return { ...base, stderr: problem };
      return { ...base, exit_code: 0, http: { status: 200 } };
    }
    if (r.type === "errored") {
      const e = (r.error as { error?: { type?: string; message?: string } }).error ?? {};
      const http: HttpFacts = { status: STATUS_OF[e.type ?? ""] ?? 500, key_env: config.api_key_env, ...(e.type ? { error_type: e.type } : {}) };
      const message = `Anthropic API error ${http.status} ${e.type ?? "error"} (Message Batch ${rb.id}, request ${w.custom_id})\n${e.message ?? "the request failed"}`;
      w.req.onOutput?.("stderr", message);
      return result(w, started, { stderr: message, http }, rb);
    }
    const why = r.type === "expired" ? "expired: the Message Batch ended (24 h) before this request was processed" : "was canceled before it was processed";
    return result(w, started, { stderr: `request ${w.custom_id} of Message Batch ${rb.id} ${why}`, http: { error_type: r.type } }, rb);
  };

  /** Waits for one request's result; stops waiting (the request stays with the provider) on a kill, a detach or the timeout. */
  const wait = (req: ExecutionRequest, signal: AbortSignal, started: number, register: (w: Waiter) => void, custom_id: string): Promise<Outcome> =>
    new Promise<Outcome>((resolve) => {
      let done = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = (r: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onStop);
        req.detach?.removeEventListener("abort", onStop);
        resolve({ ...r, duration_ms: Date.now() - started });
      };
      const w: Waiter = { req, custom_id, resolve: finish };
      const onStop = () => void (w.collecting || leave(w, { interrupted: true, exit_code: null, detached: true, stderr: "stopped waiting; the request stays with the Message Batches API and a resume picks its result up" }));
      const leave = (waiter: Waiter, fields: Partial<ExecutionResult>) => {
        const g = gathering.findIndex((x) => x.w === waiter);
        if (g >= 0) {
          // Not submitted yet: nothing to detach from.
          gathering.splice(g, 1);
          return finish({ ...errorResult(req, argvFor(), started, "stopped before it was submitted", {}), interrupted: true, exit_code: null });
        }
        for (const watch of watches.values()) {
          if (!watch.waiters.delete(waiter.custom_id)) continue;
          watch.wake?.abort();
          return finish(result(waiter, started, fields, watch.rb));
        }
        finish({ ...errorResult(req, argvFor(), started, "", fields) });
      };
      if (signal.aborted || req.detach?.aborted) return onStop();
      signal.addEventListener("abort", onStop, { once: true });
      req.detach?.addEventListener("abort", onStop, { once: true });
      timer = setTimeout(
        () => leave(w, { timed_out: true, detached: true, stderr: `no result within backend.timeout_seconds (${Math.round(req.timeoutMs / 1000)}s); the request stays with the Message Batches API` }),
        Math.min(req.timeoutMs, MAX_TIMER_MS),
      );
      register(w);
    });

  const reattach = async (req: ExecutionRequest, signal: AbortSignal, started: number): Promise<Outcome> => {
    const { key, custom_id } = req.reattach!;
    let watch = watches.get(key);
    if (!watch) {
      const rb = (await recorded()).get(key);
      if (!rb) return { ...errorResult(req, argvFor(), started, `the Message Batch ${key} this attempt was submitted in is not recorded; submitting again`, { http: { error_type: "connection" } }) };
      watch = { rb: { ...rb }, waiters: new Map(), polling: false, reattached: true, lastAttach: Date.now() };
      watches.set(key, watch);
    }
    const w = watch;
    if (w.rb.status === "submitting" && !w.rb.id) {
      const adopted = await adopt(w.rb).catch(() => undefined);
      if (!adopted) {
        w.rb.status = "failed";
        w.rb.error = "the create call never answered and no Message Batch of that moment was found";
        await save(w.rb).catch(() => {});
      } else await save(w.rb).catch(() => {});
    }
    if (w.rb.status === "failed" || !w.rb.id) return { ...errorResult(req, argvFor(), started, `Message Batch ${key} was never created (${w.rb.error ?? "unknown"}); submitting again`, { http: { error_type: "connection" } }) };
    if (Date.parse(w.rb.created_at ?? w.rb.submitted_at) + RESULTS_KEPT_MS < Date.now()) {
      return { ...errorResult(req, argvFor(w.rb.id), started, `the results of Message Batch ${w.rb.id} are no longer kept (29 days); submitting again`, { http: { error_type: "expired" } }) };
    }
    return wait(req, signal, started, (waiter) => {
      w.waiters.set(custom_id, waiter);
      w.lastAttach = Date.now();
      void poll(w);
    }, custom_id);
  };

  return {
    name: "anthropic_batch",
    inFlight: Math.max(1, config.requests_per_batch),
    describe(req) {
      return { argv: argvFor(), cwd: req.cwd, env: { [config.api_key_env]: "***" }, stdin: "prompt" };
    },
    preflight() {
      // A run starts here: the SDK loads while the run sets up its state.
      void loadSdk().catch(() => {});
      return missingKey(config, ctx);
    },
    idle() {
      settled = true;
      if (gathering.length) scheduleSubmit();
    },
    async cancelRemote() {
      gathering.splice(0);
      const api = await client();
      if (!api) return;
      const open = new Map<string, RemoteBatch>();
      for (const rb of (await recorded()).values()) if (rb.id && (rb.status === "in_progress" || rb.status === "submitting")) open.set(rb.key, rb);
      for (const w of watches.values()) if (w.rb.id && w.rb.status === "in_progress") open.set(w.rb.key, w.rb);
      await Promise.all(
        [...open.values()].map(async (rb) => {
          try {
            applyView(rb, await api.messages.batches.cancel(rb.id!));
            rb.cancel_requested_at = iso();
            await save(rb);
          } catch (e) {
            warn(`cannot cancel Message Batch ${rb.id}: ${(e as Error).message}`);
          }
        }),
      );
    },
    async execute(req, signal) {
      const started = Date.now();
      const missing = missingKey(config, ctx);
      if (missing) return setupFailure(req, argvFor(), "missing_api_key", missing.message, missing.hint);
      if (signal.aborted) return errorResult(req, argvFor(), started, "", { exit_code: null, interrupted: true });
      if (req.reattach) return reattach(req, signal, started);

      const maxTokens = maxTokensFor(config, req, { batch: true });
      if (maxTokens < 1) {
        const reason = `the prompt alone would cost more than the $${req.budget_usd!.toFixed(4)} budget.max_cost_usd_per_batch has left for this batch`;
        return errorResult(req, argvFor(), started, reason, { fail_batch: { category: "budget", reason } });
      }
      const params = messageParams(config, req, maxTokens);
      const custom_id = customId(req.batch.batch_num, req.attempt);
      return wait(req, signal, started, (w) => {
        gathering.push({ w, params, bytes: Buffer.byteLength(JSON.stringify(params)) + 64 });
        if (gathering.length >= config.requests_per_batch) void submitNow();
        else scheduleSubmit();
      }, custom_id);
    },
  };
}

/** The HTTP status an errored Message Batch request would have had on its own. */
const STATUS_OF: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  overloaded_error: 529,
};
