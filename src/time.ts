/**
 * Durations and moments as Mozart shows them to people: one duration style and one time format,
 * in one zone (the machine's local zone, which TZ sets). Machine output (--json, state) keeps
 * ISO 8601 UTC; this is only for humans. Pure: the zone offset can be passed in for tests.
 */

/** `12s`, `1m01s`, `1h05m`: compact, and the largest unit that matters first. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  return `${h}h${String(m % 60).padStart(2, "0")}m`;
}

export interface TimeOptions {
  /** Only the clock, `14:05:09`: for log lines whose date and zone were shown once before. */
  clock?: boolean;
  /** Minutes east of UTC; default: the local zone's offset at that moment (daylight saving included). */
  offsetMinutes?: number;
}

/**
 * `2026-12-01 14:05:09 UTC+1`: sortable, unambiguous (24-hour clock, the zone always named as an
 * offset, which every reader can convert, unlike abbreviations such as IST), and short enough for
 * a progress line. Offsets that are not whole hours read `UTC+5:30`; UTC itself reads `UTC`.
 */
export function formatTime(ms: number, opts: TimeOptions = {}): string {
  const offset = opts.offsetMinutes ?? -new Date(ms).getTimezoneOffset();
  // Shift the moment by the offset and read it as UTC: the same fields the local zone shows.
  const d = new Date(ms + offset * 60_000);
  const two = (n: number) => String(n).padStart(2, "0");
  const clock = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  if (opts.clock) return clock;
  return `${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ${clock} ${zoneName(offset)}`;
}

function zoneName(offsetMinutes: number): string {
  if (offsetMinutes === 0) return "UTC";
  const sign = offsetMinutes > 0 ? "+" : "-";
  const abs = Math.abs(offsetMinutes);
  const minutes = abs % 60;
  return `UTC${sign}${Math.floor(abs / 60)}${minutes ? `:${String(minutes).padStart(2, "0")}` : ""}`;
}

/** Timers fire at once for delays above 2^31-1 ms (24.8 days), so long sleeps are taken in chunks. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The one sleep: ends early (resolving false) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  if (!(ms > 0)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const end = Date.now() + ms;
    let timer: ReturnType<typeof setTimeout>;
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const arm = () => {
      const left = end - Date.now();
      if (left <= 0) {
        signal?.removeEventListener("abort", onAbort);
        resolve(true);
        return;
      }
      timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    arm();
  });
}
