/**
 * The one event stream of a run. Progress output, notifications and the attempt log all
 * consume it; the engine never knows who is listening. A listener that throws is isolated.
 */
import type { AttemptMode, BatchError } from "../state/types.ts";

export type MozartEvent =
  | { type: "job_start"; job_id: string; total_batches: number; to_run: number; completed: number; resumed: boolean; concurrency: number }
  | { type: "batch_start"; batch_num: number; start_item: number; end_item: number }
  | { type: "attempt_start"; batch_num: number; attempt: number; mode: AttemptMode; argv: string[] }
  | {
      type: "attempt_end";
      batch_num: number;
      attempt: number;
      decision: string;
      reason: string;
      duration_ms: number;
      exit_code: number | null;
      cost_usd?: number;
      output_tail: string;
      validations?: { passed: number; total: number };
      retry_in_ms?: number;
    }
  | { type: "batch_complete"; batch_num: number; attempts: number; duration_ms: number; cost_usd: number }
  | { type: "batch_failed"; batch_num: number; attempts: number; error: BatchError }
  | { type: "rate_limit_hold"; batch_num: number; until: number; reason: string; waits: number }
  | { type: "hold_end"; batch_num: number }
  | { type: "job_paused"; job_id: string; completed: number; total_batches: number; reason: string }
  | { type: "job_complete"; job_id: string; completed: number; total_batches: number; duration_ms: number; cost_usd: number }
  | { type: "job_failed"; job_id: string; completed: number; failed: number; total_batches: number; error: string; duration_ms: number; cost_usd: number };

export type EventType = MozartEvent["type"];
export type Listener = (event: MozartEvent) => void;

export interface Emitter {
  on(listener: Listener): () => void;
  emit(event: MozartEvent): void;
}

export function createEmitter(onListenerError: (e: unknown) => void = () => {}): Emitter {
  const listeners = new Set<Listener>();
  return {
    on(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    emit(event) {
      for (const l of listeners) {
        try {
          l(event);
        } catch (e) {
          onListenerError(e);
        }
      }
    },
  };
}
