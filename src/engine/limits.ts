/**
 * When does a usage limit reset? Parses every form the `claude` CLI has printed (anchors.md §B5)
 * into epoch milliseconds. Pure: the clock comes in as `now`, the fallback zone as an option, and
 * zone arithmetic uses Intl only (no date library).
 */

export interface ResetTimeOptions {
  /** IANA zone for times printed without one. Default: the system's zone. */
  timeZone?: string;
  /** Told about a zone name Intl does not know, and the zone used instead (never silent). */
  onUnknownZone?: (name: string, used: string) => void;
}

/**
 * A reset time that passed less than this long ago is taken as "just reset", not as tomorrow:
 * the CLI rounds to the minute and the message may be a moment old when we read it.
 */
const JUST_PASSED_MS = 2 * 60_000;
const DAY_MS = 86_400_000;

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/** `Claude AI usage limit reached|1750708800` (epoch seconds; milliseconds accepted too). */
const EPOCH = /\|\s*(\d{10,13})\b/;
/** `resets 2026-08-09 00:00 UTC`, `regain access on 2026-04-01 at 00:00 UTC`. */
const ISO = /\b(\d{4})-(\d{2})-(\d{2})(?:[ T]|\s+at\s+)(\d{1,2}):(\d{2})(?::\d{2})?\s*(Z\b|UTC\b|GMT\b|\(([^)\s]+)\)|([A-Za-z]+\/[A-Za-z_+\-/]+))?/i;
/**
 * `resets 3pm (Europe/Lisbon)`, `resets 3:45pm`, `resets Apr 23 at 4pm (America/Recife)`,
 * `resets Mon 12:00am`, `Your limit will reset at 3pm (America/Bogota).`
 */
const CLOCK = new RegExp(
  String.raw`\breset(?:s)?(?:\s+at)?\s+` +
    String.raw`(?:(?<dow>mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+)?` +
    String.raw`(?:(?<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?<day>\d{1,2})(?:,?\s+(?<year>\d{4}))?,?\s+(?:at\s+)?)?` +
    String.raw`(?<h>\d{1,2})(?::(?<mi>\d{2}))?\s*(?<ampm>am|pm)?` +
    String.raw`(?:\s*\((?<zone>[^)]+)\)|\s+(?<bare>UTC|GMT)\b)?`,
  "i",
);

export function parseResetTime(text: string, now: number, opts: ResetTimeOptions = {}): number | null {
  const epoch = EPOCH.exec(text);
  // Seconds or milliseconds: values past 1e12 are milliseconds (1e12 s is the year 33658).
  if (epoch?.[1]) return Number(epoch[1]) > 1e12 ? Number(epoch[1]) : Number(epoch[1]) * 1000;

  const iso = ISO.exec(text);
  if (iso) {
    const [, y, mo, d, h, mi, utcish, parenZone, bareZone] = iso;
    const zone = utcish && !parenZone && !bareZone ? "UTC" : pickZone(parenZone ?? bareZone, opts);
    return wallToEpoch(Number(y), Number(mo), Number(d), Number(h), Number(mi), zone);
  }

  const clock = CLOCK.exec(text)?.groups;
  if (!clock?.h) return null;
  // A bare number ("resets 5") is too ambiguous to act on.
  if (!clock.ampm && clock.mi === undefined) return null;
  const hour = toHour24(Number(clock.h), clock.ampm);
  const minute = clock.mi === undefined ? 0 : Number(clock.mi);
  if (hour === null || minute > 59) return null;
  const zone = pickZone(clock.zone ?? clock.bare, opts);
  const today = wallParts(now, zone);

  if (clock.mon && clock.day) {
    const month = MONTHS.indexOf(clock.mon.toLowerCase()) + 1;
    const explicitYear = clock.year ? Number(clock.year) : undefined;
    const at = wallToEpoch(explicitYear ?? today.year, month, Number(clock.day), hour, minute, zone);
    // "resets Jan 2" read on Dec 30 means next year.
    if (explicitYear === undefined && at < now - DAY_MS) return wallToEpoch(today.year + 1, month, Number(clock.day), hour, minute, zone);
    return at;
  }

  let days = 0;
  if (clock.dow) days = (WEEKDAYS.indexOf(clock.dow.toLowerCase()) - today.weekday + 7) % 7;
  let at = wallToEpoch(today.year, today.month, today.day + days, hour, minute, zone);
  if (at <= now - JUST_PASSED_MS) at = wallToEpoch(today.year, today.month, today.day + days + (clock.dow ? 7 : 1), hour, minute, zone);
  return at;
}

function toHour24(h: number, ampm: string | undefined): number | null {
  if (!ampm) return h <= 23 ? h : null;
  if (h < 1 || h > 12) return null;
  const pm = ampm.toLowerCase() === "pm";
  return (h % 12) + (pm ? 12 : 0);
}

/** The zone printed in the message when Intl knows it; otherwise the configured local zone. */
function pickZone(name: string | undefined, opts: ResetTimeOptions): string {
  const candidates = [name?.trim(), opts.timeZone, Intl.DateTimeFormat().resolvedOptions().timeZone, "UTC"];
  const used = candidates.find((zone) => zone && isZone(zone)) ?? "UTC";
  for (const wanted of [name?.trim(), opts.timeZone]) {
    if (wanted && wanted !== used && !isZone(wanted)) {
      opts.onUnknownZone?.(wanted, used);
      break;
    }
  }
  return used;
}

/** Whether Intl knows the IANA zone name (TZ values like "CET-1CEST" or typos are not). */
export 
function isZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

interface WallParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  weekday: number;
}

function wallParts(epoch: number, zone: string): WallParts {
  const fmt = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    second: "numeric",
    weekday: "short",
  });
  const get = (type: string) => fmt.formatToParts(epoch).find((p) => p.type === type)?.value ?? "";
  return {
    year: Number(get("year")),
    month: Number(get("month")),
    day: Number(get("day")),
    hour: Number(get("hour")) % 24,
    minute: Number(get("minute")),
    second: Number(get("second")),
    weekday: WEEKDAYS.indexOf(get("weekday").toLowerCase().slice(0, 3)),
  };
}

/** How far the zone's wall clock is ahead of UTC at `epoch`. */
function zoneOffset(epoch: number, zone: string): number {
  const p = wallParts(epoch, zone);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - (epoch - (((epoch % 1000) + 1000) % 1000));
}

/** The instant a wall clock in `zone` shows the given time. Day overflow (day + 1) rolls over months. */
function wallToEpoch(year: number, month: number, day: number, hour: number, minute: number, zone: string): number {
  const asUtc = Date.UTC(year, month - 1, day, hour, minute);
  const first = asUtc - zoneOffset(asUtc, zone);
  // Re-check once: the offset may differ on the other side of a DST change.
  const second = asUtc - zoneOffset(first, zone);
  return second;
}
