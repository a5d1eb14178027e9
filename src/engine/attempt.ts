/**
 * One attempt of one batch: execute the prompt through the backend, classify the result, and
 * when it succeeded run the validations. Records nothing itself: the batch loop in start.ts
 * records every step through the recorder.
 */
import { mozartEnv } from "../backends/command.ts";
import type { Backend, ExecutionRequest, ExecutionResult } from "../backends/types.ts";
import type { PreparedJob } from "../config/check.ts";
import type { AttemptMode, ValidationResult } from "../state/types.ts";
import { classify, type Decision } from "./classify.ts";
import { requestFor } from "./job.ts";
import type { ValidationOutcome } from "./step.ts";
import { runValidations, summarize } from "./validate.ts";

export interface AttemptInput {
  job: PreparedJob;
  backend: Backend;
  batchNum: number;
  attempt: number;
  mode: AttemptMode;
  prompt: string;
  /** mtimes before the batch's first attempt, for file_modified. */
  baseline: Record<string, number>;
  /** Aborted to stop the attempt now (second Ctrl+C, cancel, lost lease). */
  kill: AbortSignal;
  tag: string;
  /** isolation: worktree — the batch's worktree (MOZART_WORKTREE). */
  worktree?: string;
  now: () => number;
  env: Record<string, string | undefined>;
  onSpawn?: (p: { pid: number; pgid: number }) => void;
  onOutput?: (stream: "stdout" | "stderr", chunk: string) => void;
  /** More of the request: the hold gate, the batch's budget, a re-attach (see ExecutionRequest). */
  extra?: Partial<ExecutionRequest>;
}

export interface AttemptOutcome {
  result: ExecutionResult;
  decision: Decision;
  /** The validation results, when the backend succeeded. */
  validations?: ValidationResult[];
  validation?: ValidationOutcome;
}

export async function runAttempt(a: AttemptInput): Promise<AttemptOutcome> {
  const cfg = a.job.config;
  const request: ExecutionRequest = { ...requestFor(a.job, a.batchNum, a.attempt, a.prompt), tag: a.tag, onSpawn: a.onSpawn, onOutput: a.onOutput, ...(a.worktree ? { worktree: a.worktree } : {}), ...a.extra };
  // The batch's own budget is spent: no attempt can start within it.
  const result: ExecutionResult =
    request.budget_usd !== undefined && request.budget_usd <= 0
      ? budgetSpent(request, a.job.config.budget.max_cost_usd_per_batch ?? 0)
      : await a.backend.execute(request, a.kill);
  let decision: Decision = classify(result, { now: a.now(), waitMinutes: cfg.rate_limit.wait_minutes, extraPatterns: a.job.limitPatterns, timeZone: a.env.TZ });
  if (decision.kind !== "success") return { result, decision };
  // Validation commands get the environment a `command` backend gets: backend.env and the batch's MOZART_* values.
  const env = { ...a.env, ...cfg.backend.env, ...mozartEnv(request) };
  const validations = await runValidations(a.job.validations(a.batchNum), {
    workspace: cfg.workspace,
    baseline: a.baseline,
    signal: a.kill,
    env,
    tag: a.tag,
    ...(result.claude?.structured_output !== undefined ? { structuredOutput: result.claude.structured_output } : {}),
  });
  // Stopped while a validation command ran: nothing was decided about the batch.
  if (a.kill.aborted) decision = { kind: "interrupted" };
  const s = summarize(validations);
  return { result, decision, validations, validation: { ...s, failing: validations.filter((v) => !v.passed).map((v) => v.description) } };
}

function budgetSpent(req: ExecutionRequest, max: number): ExecutionResult {
  const reason = `budget.max_cost_usd_per_batch ($${max}) is spent: no further attempt of this batch can start`;
  return { exit_code: null, signal: null, timed_out: false, interrupted: false, duration_ms: 0, stdout: "", stderr: reason, argv: [], cwd: req.cwd, fail_batch: { category: "budget", reason } };
}
