/**
 * A run's learning: the outcome of each batch it finishes goes to the history, and the window of
 * the run's finished batches decides the breaker and the concurrency (breaker.ts).
 */
import type { JobConfig } from "../config/schema.ts";
import { judge, initialConcurrency, type Verdict } from "./breaker.ts";
import { openHistory } from "./history.ts";
import type { Outcome } from "./outcome.ts";

export interface Learner {
  readonly enabled: boolean;
  /** The concurrency the run may use now. */
  readonly concurrency: number;
  /** Records a finished batch's outcome (history, window); the verdict follows. */
  finished(outcome: Outcome): Promise<Verdict>;
  /** Waits for the history's appends and closes it: at the end of the run. */
  close(): Promise<void>;
}

export function createLearner(opts: { learning: JobConfig["learning"]; historyPath?: string; concurrency: number; warn: (message: string) => void }): Learner {
  const cfg = opts.learning;
  const max = opts.concurrency;
  const outcomes: Outcome[] = [];
  let concurrency = cfg.enabled ? initialConcurrency(cfg, max) : max;
  let warned = false;
  // Appends go out one after another, in the order the batches finished; the run does not wait for them.
  const history = cfg.enabled && opts.historyPath ? openHistory(opts.historyPath) : undefined;
  return {
    enabled: cfg.enabled,
    get concurrency() {
      return concurrency;
    },
    async finished(outcome) {
      if (!cfg.enabled) return { concurrency };
      history?.append(outcome).catch((e: Error) => {
        if (!warned) opts.warn(`cannot append to the outcome history ${opts.historyPath} (${e.message}); outcomes stay in the job's state`);
        warned = true;
      });
      outcomes.push(outcome);
      if (outcomes.length > cfg.window * 4) outcomes.splice(0, outcomes.length - cfg.window * 2);
      const verdict = judge(outcomes, cfg, concurrency, max);
      concurrency = verdict.concurrency;
      return verdict;
    },
    close: () => history?.close() ?? Promise.resolve(),
  };
}
