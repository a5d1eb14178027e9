/**
 * The `anthropic_api` backend: one Messages API call per attempt, the prompt as the user
 * message, the answer written to the attempt's output. The SDK's own retries are off
 * (`maxRetries: 0`): its hidden sleeps obey `retry-after` without a cap and cannot be paused,
 * shown or resumed, so Mozart's retry policy decides from the `http` facts instead.
 */
import Anthropic from "@anthropic-ai/sdk";
import type { BackendConfig } from "../config/schema.ts";
import { MAX_TIMER_MS } from "../runtime/process.ts";
import { setupFailure } from "./command.ts";
import type { Backend, BackendContext, ExecutionRequest, ExecutionResult, HttpFacts } from "./types.ts";

export const DEFAULT_MODEL = "claude-sonnet-4-20250514";
const DEFAULT_BASE_URL = "https://api.anthropic.com";

/**
 * USD per million tokens [input, output], for a rough cost ESTIMATE only (list prices; cache
 * writes count 1.25x and cache reads 0.1x the input price). Unknown models get no estimate.
 */
const PRICES: Array<[RegExp, number, number]> = [
  [/opus-4-(?:[5-9]|1\d)(?!\d)/, 5, 25],
  [/opus/, 15, 75],
  [/sonnet/, 3, 15],
  [/haiku-4/, 1, 5],
  [/3-5-haiku|haiku-3-5/, 0.8, 4],
  [/haiku/, 0.25, 1.25],
];

export function estimateCostUsd(model: string, usage: Partial<Record<string, unknown>>): number | undefined {
  const price = PRICES.find(([re]) => re.test(model));
  if (!price) return undefined;
  const n = (k: string) => (typeof usage[k] === "number" ? (usage[k] as number) : 0);
  const [, input, output] = price;
  const dollars = n("input_tokens") * input + n("cache_creation_input_tokens") * input * 1.25 + n("cache_read_input_tokens") * input * 0.1 + n("output_tokens") * output;
  return dollars / 1_000_000;
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

function baseUrl(config: BackendConfig, ctx: BackendContext): string {
  return config.env.ANTHROPIC_BASE_URL || ctx.env.ANTHROPIC_BASE_URL || DEFAULT_BASE_URL;
}

function errorResult(req: ExecutionRequest, argv: string[], started: number, stderr: string, fields: Partial<ExecutionResult>): ExecutionResult {
  return { exit_code: 1, signal: null, timed_out: false, interrupted: false, duration_ms: Date.now() - started, stdout: "", stderr, argv, cwd: req.cwd, ...fields };
}

export function createAnthropicApiBackend(config: BackendConfig, ctx: BackendContext): Backend {
  const model = config.model ?? DEFAULT_MODEL;
  const argvFor = () => ["POST", `${baseUrl(config, ctx).replace(/\/+$/, "")}/v1/messages`, `model=${model}`, `max_tokens=${config.max_tokens}`];
  return {
    name: "anthropic_api",
    describe(req) {
      return { argv: argvFor(), cwd: req.cwd, env: { [config.api_key_env]: "***" }, stdin: "prompt" };
    },
    async execute(req, signal) {
      const argv = argvFor();
      const keyName = config.api_key_env;
      const apiKey = config.env[keyName] || ctx.env[keyName];
      if (!apiKey) {
        return setupFailure(
          req,
          argv,
          "missing_api_key",
          `the environment variable ${keyName} is not set, so there is no Anthropic API key`,
          `Export ${keyName}=<your key> before running Mozart, or set backend.api_key_env to the variable that holds it.`,
        );
      }
      if (signal.aborted) return errorResult(req, argv, Date.now(), "", { exit_code: null, interrupted: true });

      const timeout = Math.min(req.timeoutMs, MAX_TIMER_MS);
      const client = new Anthropic({ apiKey, baseURL: baseUrl(config, ctx), maxRetries: 0, timeout, logLevel: "off" });
      const started = Date.now();
      try {
        // `temperature` is still accepted by the API but no longer typed by this SDK version.
        const params: Anthropic.MessageCreateParamsNonStreaming & { temperature: number } = {
          model,
          max_tokens: config.max_tokens,
          temperature: config.temperature,
          messages: [{ role: "user", content: req.prompt }],
        };
        const message = await client.messages.create(params, { signal, timeout });
        const text = message.content.map((block) => (block.type === "text" ? block.text : "")).join("");
        req.onOutput?.("stdout", text);
        const usage = message.usage as unknown as Record<string, unknown>;
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
          cost_usd: estimateCostUsd(message.model ?? model, usage),
          http: { status: 200 },
        };
      } catch (e) {
        const result = fromSdkError(e, req, argv, started, signal);
        req.onOutput?.("stderr", result.stderr);
        return result;
      }
    },
  };
}

function fromSdkError(e: unknown, req: ExecutionRequest, argv: string[], started: number, signal: AbortSignal): ExecutionResult {
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
    const body = e.error as { error?: { type?: string; message?: string } } | undefined;
    const http: HttpFacts = { status: e.status };
    const type = e.type ?? body?.error?.type;
    if (type) http.error_type = type;
    if (e.errorCode) http.error_code = e.errorCode;
    if (e.requestID) http.request_id = e.requestID;
    const after = retryAfterMs(e.headers, Date.now());
    if (after !== undefined) http.retry_after_ms = after;
    const shouldRetry = e.headers?.get("x-should-retry");
    if (shouldRetry === "true" || shouldRetry === "false") http.should_retry = shouldRetry === "true";
    // The API's own message on a line of its own, so classify()'s anchored patterns can read it.
    const apiMessage = e.apiMessage ?? body?.error?.message ?? e.message;
    const head = `Anthropic API error ${e.status}${type ? ` ${type}` : ""}${e.requestID ? ` (request-id ${e.requestID})` : ""}`;
    return errorResult(req, argv, started, `${head}\n${apiMessage}`, { http });
  }
  const reason = e instanceof Error ? e.message : String(e);
  return errorResult(req, argv, started, `Anthropic SDK error: ${reason}`, {});
}
