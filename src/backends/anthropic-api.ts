/**
 * The `anthropic_api` backend: one Messages API call per attempt (more when a cut-off answer is
 * continued), the prompt as the user message, its static part as a cached block, the answer
 * written atomically to the batch's `output_path`, and every request's tokens priced into the
 * attempt's spend. The SDK's own retries are off (`maxRetries: 0`): its hidden sleeps obey
 * `retry-after` without a cap and cannot be paused, shown or resumed, so Mozart's retry policy
 * decides from the `http` facts instead, and every request first waits out the job's shared hold.
 *
 * What both API backends share (the key, the address, the request body, errors, spend) is
 * exported from here for backends/anthropic-batch.ts.
 */
import type Anthropic from "@anthropic-ai/sdk";
import type { AnthropicApiConfig, ApiBackendConfig } from "../config/schema.ts";
import { MAX_TIMER_MS } from "../runtime/process.ts";
import { writeFileAtomic } from "../state/atomic-file.ts";
import { addTokens, noTokens } from "../state/spend.ts";
import type { TokenCounts } from "../state/types.ts";
import { setupFailure } from "./command.ts";
import { costOf, maxTokensWithin, priceOf, tokensFromUsage } from "./prices.ts";
import type { Backend, BackendContext, ExecutionRequest, ExecutionResult, HttpFacts, Spend } from "./types.ts";

export const DEFAULT_BASE_URL = "https://api.anthropic.com";
/** `continue_on_max_tokens: true` asks for the rest this many times at most. */
const DEFAULT_CONTINUATIONS = 4;
/** For the per-batch budget, a prompt is counted generously: a token per 2.5 characters (English prose runs about 4). */
const BUDGET_CHARS_PER_TOKEN = 2.5;

export function apiKeyOf(config: ApiBackendConfig, ctx: BackendContext): string | undefined {
  return config.env[config.api_key_env] || ctx.env[config.api_key_env] || undefined;
}

/** backend.base_url, else ANTHROPIC_BASE_URL (backend.env first), else the API itself. */
export function baseUrlOf(config: ApiBackendConfig, ctx: BackendContext): string {
  return (config.base_url || config.env.ANTHROPIC_BASE_URL || ctx.env.ANTHROPIC_BASE_URL || DEFAULT_BASE_URL).replace(/\/+$/, "");
}

/** The problem with a missing key, in words that name the variable. */
export function missingKey(config: ApiBackendConfig, ctx: BackendContext): { message: string; hint: string } | undefined {
  if (apiKeyOf(config, ctx)) return undefined;
  const name = config.api_key_env;
  return {
    message: `the environment variable ${name} is not set, so there is no Anthropic API key (backend.api_key_env: ${name})`,
    hint: `Export ${name}=<your key> before running Mozart, or set backend.api_key_env to the variable that holds it.`,
  };
}

type Sdk = typeof import("@anthropic-ai/sdk").default;
let sdk: Sdk | undefined;
/** The SDK, loaded on first use: its import costs a tenth of a second that jobs on other backends never pay. */
export async function loadSdk(): Promise<Sdk> {
  return (sdk ??= (await import("@anthropic-ai/sdk")).default);
}

/** One client per backend: a new one per request would redo its setup every time. */
export function clientFor(config: ApiBackendConfig, ctx: BackendContext): () => Promise<Anthropic | undefined> {
  let client: Anthropic | undefined;
  return async () => {
    const apiKey = apiKeyOf(config, ctx);
    if (!apiKey) return undefined;
    const Client = await loadSdk();
    client ??= new Client({ apiKey, baseURL: baseUrlOf(config, ctx), maxRetries: 0, timeout: MAX_TIMER_MS, logLevel: "off" });
    return client;
  };
}

type Params = Anthropic.MessageCreateParamsNonStreaming & { temperature: number };

/**
 * The request body: the prompt's static part (prompt.cache_prefix, or the template's text before
 * its first per-batch variable) as a cached block, the rest after it; the system prompt, when
 * set, sits before both and is cached with them (a breakpoint caches everything before it).
 */
export function messageParams(config: ApiBackendConfig, req: Pick<ExecutionRequest, "prompt" | "cache_prefix">, maxTokens: number): Params {
  const cacheControl = { type: "ephemeral" as const, ttl: config.cache_ttl };
  // The API caches nothing shorter than the model's minimum; a prefix with fewer characters than
  // that many tokens certainly falls short, and is sent as plain text.
  const minChars = priceOf(config.model)?.minCacheTokens ?? 1024;
  const system = config.system ?? "";
  const candidate = config.cache && req.cache_prefix && req.prompt.startsWith(req.cache_prefix) && req.prompt.length > req.cache_prefix.length ? req.cache_prefix : undefined;
  const prefix = candidate && candidate.length + system.length >= minChars ? candidate : undefined;
  const cacheSystem = config.cache && !prefix && system.length >= minChars;
  const content: Anthropic.MessageParam["content"] = prefix
    ? [
        { type: "text", text: prefix, cache_control: cacheControl },
        { type: "text", text: req.prompt.slice(prefix.length) },
      ]
    : req.prompt;
  const systemBlocks: Anthropic.TextBlockParam[] | undefined = system ? [{ type: "text", text: system, ...(cacheSystem ? { cache_control: cacheControl } : {}) }] : undefined;
  // `temperature` is still accepted by the API but no longer typed by this SDK version.
  return { model: config.model, max_tokens: maxTokens, temperature: config.temperature, ...(systemBlocks ? { system: systemBlocks } : {}), messages: [{ role: "user", content }] };
}

/** Tokens priced by the table; a model it does not know is recorded unpriced (tokens only). */
export function spendOf(model: string, tokens: TokenCounts, requests: number, opts: { batch?: boolean } = {}): Spend {
  const price = priceOf(model);
  const tier = opts.batch ? "batch" : "standard";
  if (!price) return { usd: 0, tokens, priced_by: "unpriced", model, tier, requests };
  return { usd: costOf(price, tokens, opts), tokens, priced_by: "price_table", model, tier, requests };
}

/**
 * `max_tokens` for one request: the configured one, lowered so that the worst case (the prompt,
 * counted generously and at the cache-write price for its cached part, then every output token)
 * stays within what the batch's budget has left. 0 when the prompt alone would cost more.
 */
export function maxTokensFor(config: ApiBackendConfig, req: Pick<ExecutionRequest, "prompt" | "cache_prefix" | "budget_usd">, opts: { batch?: boolean } = {}): number {
  if (req.budget_usd === undefined) return config.max_tokens;
  const price = priceOf(config.model);
  if (!price) return config.max_tokens;
  const chars = req.prompt.length + (config.system?.length ?? 0);
  const cached = config.cache ? (req.cache_prefix?.length ?? 0) + (config.system?.length ?? 0) : 0;
  const tokens = Math.ceil(chars / BUDGET_CHARS_PER_TOKEN) + 16;
  const allowed = maxTokensWithin(price, req.budget_usd, { tokens, cachedTokens: Math.min(tokens, Math.ceil(cached / BUDGET_CHARS_PER_TOKEN)), ttl: config.cache_ttl }, opts);
  return Math.min(config.max_tokens, allowed);
}

/** `retry-after-ms` wins over `retry-after` (seconds or an HTTP date), as in the SDK. */
export function retryAfterMs(headers: Headers | undefined, now: number): number | undefined {
  const ms = Number.parseFloat(headers?.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return Math.round(ms);
  const raw = headers?.get("retry-after");
  if (!raw) return undefined;
  const seconds = Number.parseFloat(raw);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const date = Date.parse(raw);
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined;
}

/**
 * When the exhausted limit refills, from the `anthropic-ratelimit-{requests,tokens,input-tokens,
 * output-tokens}-reset` headers (RFC 3339): the latest reset among the limits whose `remaining`
 * is 0, else the latest reset given.
 */
export function rateLimitResetAt(headers: Headers | undefined): number | undefined {
  if (!headers) return undefined;
  let exhausted: number | undefined;
  let any: number | undefined;
  for (const kind of ["requests", "tokens", "input-tokens", "output-tokens"]) {
    const at = Date.parse(headers.get(`anthropic-ratelimit-${kind}-reset`) ?? "");
    if (!Number.isFinite(at)) continue;
    any = Math.max(any ?? at, at);
    if (headers.get(`anthropic-ratelimit-${kind}-remaining`) === "0") exhausted = Math.max(exhausted ?? at, at);
  }
  return exhausted ?? any;
}

export function errorResult(req: Pick<ExecutionRequest, "cwd">, argv: string[], started: number, stderr: string, fields: Partial<ExecutionResult>): ExecutionResult {
  return { exit_code: 1, signal: null, timed_out: false, interrupted: false, duration_ms: Date.now() - started, stdout: "", stderr, argv, cwd: req.cwd, ...fields };
}

/** The facts of an API error response: status, type, code, request id, the headers that say when to try again. */
export function httpFactsOf(e: InstanceType<Sdk["APIError"]>, keyEnv: string): HttpFacts {
  const body = e.error as { error?: { type?: string } } | undefined;
  const http: HttpFacts = { status: e.status ?? undefined, key_env: keyEnv };
  const type = e.type ?? body?.error?.type;
  if (type) http.error_type = type;
  if (e.errorCode) http.error_code = e.errorCode;
  if (e.requestID) http.request_id = e.requestID;
  const after = retryAfterMs(e.headers, Date.now());
  if (after !== undefined) http.retry_after_ms = after;
  const reset = rateLimitResetAt(e.headers);
  if (reset !== undefined) http.rate_limit_reset_at = reset;
  const shouldRetry = e.headers?.get("x-should-retry");
  if (shouldRetry === "true" || shouldRetry === "false") http.should_retry = shouldRetry === "true";
  return http;
}

/** Any SDK error as an ExecutionResult: aborted, timed out, unreachable, or the API's own error. */
export function fromSdkError(e: unknown, req: Pick<ExecutionRequest, "cwd" | "timeoutMs">, argv: string[], started: number, signal: AbortSignal, keyEnv: string): ExecutionResult {
  // The SDK is loaded: its client made the call that failed.
  const Anthropic = sdk;
  if (!Anthropic) return errorResult(req, argv, started, `Anthropic SDK error: ${e instanceof Error ? e.message : String(e)}`, {});
  if (e instanceof Anthropic.APIUserAbortError || signal.aborted) {
    return errorResult(req, argv, started, "request aborted", { exit_code: null, interrupted: true });
  }
  if (e instanceof Anthropic.APIConnectionTimeoutError) {
    return errorResult(req, argv, started, `Request timed out after ${req.timeoutMs} ms (backend.timeout_seconds)`, { timed_out: true, http: { error_type: "timeout" } });
  }
  if (e instanceof Anthropic.APIConnectionError) {
    const cause = e.cause instanceof Error ? `: ${e.cause.message}` : "";
    return errorResult(req, argv, started, `Connection error: cannot reach ${argv[1]}${cause}`, { http: { error_type: "connection" } });
  }
  if (e instanceof Anthropic.APIError && typeof e.status === "number") {
    const http = httpFactsOf(e, keyEnv);
    const body = e.error as { error?: { message?: string } } | undefined;
    // The API's own message on a line of its own, so classify()'s anchored patterns can read it.
    const apiMessage = e.apiMessage ?? body?.error?.message ?? e.message;
    const head = `Anthropic API error ${e.status}${http.error_type ? ` ${http.error_type}` : ""}${e.requestID ? ` (request-id ${e.requestID})` : ""}`;
    return errorResult(req, argv, started, `${head}\n${apiMessage}`, { http });
  }
  const reason = e instanceof Error ? e.message : String(e);
  return errorResult(req, argv, started, `Anthropic SDK error: ${reason}`, {});
}

/** The answer, written whole or not at all, where the batch's validations look for it. */
export async function writeAnswer(path: string | undefined, text: string): Promise<string | undefined> {
  if (!path) return undefined;
  try {
    await writeFileAtomic(path, text, { mkdir: true });
    return undefined;
  } catch (e) {
    return `cannot write the answer to ${path} (backend.output_path): ${(e as Error).message}`;
  }
}

export const textOf = (content: Anthropic.ContentBlock[]): string => content.map((block) => (block.type === "text" ? block.text : "")).join("");

export function createAnthropicApiBackend(config: AnthropicApiConfig, ctx: BackendContext): Backend {
  const argvFor = () => ["POST", `${baseUrlOf(config, ctx)}/v1/messages`, `model=${config.model}`, `max_tokens=${config.max_tokens}`];
  const client = clientFor(config, ctx);
  const continuations = config.continue_on_max_tokens === true ? DEFAULT_CONTINUATIONS : config.continue_on_max_tokens === false ? 0 : config.continue_on_max_tokens;
  return {
    name: "anthropic_api",
    describe(req) {
      return { argv: argvFor(), cwd: req.cwd, env: { [config.api_key_env]: "***" }, stdin: "prompt" };
    },
    preflight() {
      // A run starts here: the SDK loads while the run sets up its state.
      void loadSdk().catch(() => {});
      return missingKey(config, ctx);
    },
    async execute(req, signal) {
      const argv = argvFor();
      const api = await client();
      const missing = missingKey(config, ctx);
      if (!api || missing) return setupFailure(req, argv, "missing_api_key", missing!.message, missing!.hint);
      const started = Date.now();
      if (signal.aborted) return errorResult(req, argv, started, "", { exit_code: null, interrupted: true });

      const maxTokens = maxTokensFor(config, req);
      if (maxTokens < 1) {
        const reason = `the prompt alone would cost more than the $${req.budget_usd!.toFixed(4)} budget.max_cost_usd_per_batch has left for this batch`;
        return errorResult(req, argv, started, reason, { fail_batch: { category: "budget", reason } });
      }
      const lowered = maxTokens < config.max_tokens ? ` (lowered from ${config.max_tokens} by budget.max_cost_usd_per_batch)` : "";
      const timeout = Math.min(req.timeoutMs, MAX_TIMER_MS);
      const params = messageParams(config, req, maxTokens);
      let tokens = noTokens();
      let requests = 0;
      let text = "";
      const spend = () => spendOf(config.model, tokens, requests);
      const withSpend = (r: ExecutionResult): ExecutionResult => (requests ? { ...r, spend: spend(), cost_usd: spend().usd } : r);
      try {
        for (let round = 0; ; round++) {
          const clear = (await req.beforeRequest?.(signal)) ?? true;
          if (!clear || signal.aborted) return withSpend(errorResult(req, argv, started, "request aborted", { exit_code: null, interrupted: true }));
          // A continuation sends the answer so far as the start of the assistant's turn; the API
          // refuses one that ends in whitespace, which the continuation then brings back.
          const body: Params = round === 0 ? params : { ...params, messages: [...params.messages, { role: "assistant", content: text.trimEnd() }] };
          const message = await api.messages.create(body, { signal, timeout });
          requests++;
          tokens = addTokens(tokens, tokensFromUsage(message.usage as unknown as Record<string, unknown>, config.cache_ttl));
          const part = textOf(message.content);
          req.onOutput?.("stdout", part);
          text = round === 0 ? part : text.trimEnd() + part;
          if (message.stop_reason !== "max_tokens") {
            if (message.stop_reason === "refusal") {
              const reason = "the model declined to answer (stop_reason: refusal)";
              return withSpend(errorResult(req, argv, started, reason, { http: { status: 200, stop_reason: "refusal" }, stdout: text }));
            }
            break;
          }
          if (round >= continuations) {
            const more = continuations ? ` and ${continuations} continuation${continuations === 1 ? "" : "s"}` : "";
            const fix = continuations ? "raise backend.max_tokens or continue_on_max_tokens" : "raise backend.max_tokens, or set backend.continue_on_max_tokens: true to ask for the rest";
            const reason = `the answer was cut off at max_tokens (${maxTokens}${lowered})${more}: ${fix}`;
            return withSpend(errorResult(req, argv, started, reason, { http: { status: 200, stop_reason: "max_tokens" }, stdout: text, text }));
          }
        }
      } catch (e) {
        const result = withSpend(fromSdkError(e, req, argv, started, signal, config.api_key_env));
        req.onOutput?.("stderr", result.stderr);
        return result;
      }
      const problem = await writeAnswer(req.output_path, text);
      const s = spend();
      if (problem) return { ...errorResult(req, argv, started, problem, { stdout: text, text }), spend: s, cost_usd: s.usd };
      return {
        exit_code: 0,
        signal: null,
        timed_out: false,
        interrupted: false,
        duration_ms: Date.now() - started,
        stdout: text,
        stderr: "",
        argv,
        cwd: req.cwd,
        text,
        spend: s,
        cost_usd: s.usd,
        http: { status: 200 },
      };
    },
  };
}
