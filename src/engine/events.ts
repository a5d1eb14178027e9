/**
 * The in-process side of the event log: every event the runner records is also handed to the
 * listeners of its run (progress line, notifications), after it landed in the store, so what a
 * listener sees is exactly what `mozart logs` shows. A listener that throws is isolated.
 */
import type { StoredEvent } from "../state/events.ts";

export type { EventPayload, EventType, StoredEvent } from "../state/events.ts";
/** What listeners receive: a recorded event. */
export type MozartEvent = StoredEvent;
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
