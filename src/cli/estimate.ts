/**
 * The cost estimate of `mozart run --dry-run`: the token count of the rendered prompts times the
 * price (src/backends/prices.ts), for the whole job and per backend, the Message Batches API's
 * saving against anthropic_api included.
 *
 * Tokens are counted with the API's count_tokens endpoint when a key is at hand (on a sample of
 * the prompts, spread over the job, then scaled by characters), and otherwise estimated at 3.5
 * characters per token. Output is unknown before a run: it is shown as an upper bound, every
 * batch answering with `max_tokens`. With prompt caching, the static part is counted as written
 * once and read by every other batch, which is what happens while batches follow each other
 * within the cache's TTL.
 */
import { apiKeyOf, baseUrlOf, loadSdk } from "../backends/anthropic-api.ts";
import { BATCH_DISCOUNT, CACHE_READ, CACHE_WRITE_1H, CACHE_WRITE_5M, CHARS_PER_TOKEN, priceOf } from "../backends/prices.ts";
import type { PreparedJob } from "../config/check.ts";
import { DEFAULT_MODEL, type ApiBackendConfig } from "../config/schema.ts";

/** Prompts sent to count_tokens, at most. */
const SAMPLE = 12;

export interface BackendEstimate {
  backend: "anthropic_api" | "anthropic_batch" | "claude_cli";
  /** Input, with the static part cached when the backend caches. */
  input_usd: number;
  /** Every batch answering with max_tokens. */
  output_max_usd: number;
  total_max_usd: number;
  /** What the configured backend is; the others are shown for comparison. */
  configured: boolean;
  note?: string;
}

export interface CostEstimate {
  model: string;
  family: string | null;
  batches: number;
  input_tokens: number;
  /** Tokens of the static part of one prompt (sent as a cached block by the API backends). */
  static_tokens: number;
  /** How the tokens were counted. */
  counted_by: "count_tokens" | "heuristic";
  /** Why the heuristic was used, or how many prompts count_tokens saw. */
  counted_note: string;
  max_tokens: number;
  backends: BackendEstimate[];
  /** anthropic_batch against anthropic_api, at most. */
  batch_saving_usd: number | null;
}

export interface EstimateOptions {
  env: Record<string, string | undefined>;
  /** Injected in tests: counts the tokens of a prompt with the API. */
  countTokens?: (prompt: string) => Promise<number>;
}

export async function estimateCost(job: PreparedJob, opts: EstimateOptions): Promise<CostEstimate | undefined> {
  const b = job.config.backend;
  if (b.type === "command") return undefined;
  const api = b.type === "anthropic_api" || b.type === "anthropic_batch" ? (b as ApiBackendConfig) : undefined;
  const model = (api ? api.model : b.model) ?? DEFAULT_MODEL;
  const price = priceOf(model);
  const total = job.totalBatches;
  let chars = 0;
  let staticChars = 0;
  const sample: string[] = [];
  const every = Math.max(1, Math.floor(total / SAMPLE));
  for (let n = 1; n <= total; n++) {
    const prompt = job.prompt(n);
    chars += prompt.length;
    if (n === 1) staticChars = job.cachePrefix(prompt)?.length ?? 0;
    if (sample.length < SAMPLE && (n - 1) % every === 0) sample.push(prompt);
  }
  const system = api?.system ?? "";
  chars += system.length * total;

  // Tokens per character: from count_tokens on the sample when possible.
  let perChar = 1 / CHARS_PER_TOKEN;
  let countedBy: CostEstimate["counted_by"] = "heuristic";
  let note = `no key in ${api?.api_key_env ?? "ANTHROPIC_API_KEY"}: ${CHARS_PER_TOKEN} characters per token`;
  const counter = opts.countTokens ?? counterFor(api, model, opts.env);
  if (counter && sample.length) {
    try {
      const counts = await Promise.all(sample.map((p) => counter(system + p)));
      const sampleChars = sample.reduce((k, p) => k + system.length + p.length, 0);
      perChar = counts.reduce((k, c) => k + c, 0) / Math.max(1, sampleChars);
      countedBy = "count_tokens";
      note = `count_tokens on ${sample.length} of ${total} prompt${total === 1 ? "" : "s"}, scaled by length`;
    } catch (e) {
      note = `count_tokens failed (${(e as Error).message.split("\n")[0]}): ${CHARS_PER_TOKEN} characters per token`;
    }
  }
  const inputTokens = Math.ceil(chars * perChar);
  const staticTokens = Math.ceil((staticChars + system.length) * perChar);
  const maxTokens = api?.max_tokens ?? 8192;

  const backends: BackendEstimate[] = [];
  let saving: number | null = null;
  if (price) {
    const perToken = (usd: number) => usd / 1_000_000;
    const plainInput = inputTokens * perToken(price.input);
    // A static part shorter than the model's minimum is not cached by the API.
    const cacheable = staticTokens >= price.minCacheTokens;
    const cachedInput = (ttl: "5m" | "1h") => {
      if (!cacheable || total < 2) return plainInput;
      const rest = inputTokens - staticTokens * total;
      const write = ttl === "1h" ? CACHE_WRITE_1H : CACHE_WRITE_5M;
      return perToken(price.input) * (rest + staticTokens * write + staticTokens * (total - 1) * CACHE_READ);
    };
    const output = total * maxTokens * perToken(price.output);
    const caches = api?.cache ?? true;
    const apiTtl = b.type === "anthropic_api" ? b.cache_ttl : "5m";
    const batchTtl = b.type === "anthropic_batch" ? b.cache_ttl : "1h";
    const apiInput = caches ? cachedInput(apiTtl) : plainInput;
    const batchInput = (caches ? cachedInput(batchTtl) : plainInput) * BATCH_DISCOUNT;
    const row = (backend: BackendEstimate["backend"], input: number, out: number, note?: string): BackendEstimate => ({
      backend,
      input_usd: round(input),
      output_max_usd: round(out),
      total_max_usd: round(input + out),
      configured: b.type === backend,
      ...(note ? { note } : {}),
    });
    const cacheNote = !caches ? undefined : cacheable ? `static part cached (${apiTtl})` : staticTokens ? `static part under the ${price.minCacheTokens}-token minimum: not cached` : undefined;
    backends.push(row("anthropic_api", apiInput, output, cacheNote));
    backends.push(row("anthropic_batch", batchInput, output * BATCH_DISCOUNT, "Message Batches: half price"));
    if (b.type === "claude_cli") backends.push(row("claude_cli", plainInput, output, "one turn per batch; tool use adds turns, and the CLI reports the real cost"));
    saving = round(apiInput + output - (batchInput + output * BATCH_DISCOUNT));
  }
  return {
    model,
    family: price?.family ?? null,
    batches: total,
    input_tokens: inputTokens,
    static_tokens: staticTokens,
    counted_by: countedBy,
    counted_note: note,
    max_tokens: maxTokens,
    backends,
    batch_saving_usd: saving,
  };
}

const round = (usd: number) => Math.round(usd * 1e6) / 1e6;

/** count_tokens through the SDK, with the backend's key and address; undefined without a key. */
function counterFor(api: ApiBackendConfig | undefined, model: string, env: Record<string, string | undefined>): ((prompt: string) => Promise<number>) | undefined {
  const ctx = { jobDir: "", workspace: "", env };
  const key = api ? apiKeyOf(api, ctx) : env.ANTHROPIC_API_KEY;
  if (!key) return undefined;
  const baseURL = api ? baseUrlOf(api, ctx) : (env.ANTHROPIC_BASE_URL ?? "https://api.anthropic.com").replace(/\/+$/, "");
  let client: InstanceType<Awaited<ReturnType<typeof loadSdk>>> | undefined;
  return async (prompt) => {
    const Client = await loadSdk();
    client ??= new Client({ apiKey: key, baseURL, maxRetries: 0, timeout: 10_000, logLevel: "off" });
    return (await client.messages.countTokens({ model, messages: [{ role: "user", content: prompt }] })).input_tokens;
  };
}
