import { describe, expect, test } from "bun:test";
import { formatDuration, formatTime } from "../../src/time.ts";

describe("durations for humans", () => {
  test("seconds, minutes, hours", () => {
    expect(formatDuration(0)).toBe("0s");
    expect(formatDuration(12_400)).toBe("12s");
    expect(formatDuration(61_000)).toBe("1m01s");
    expect(formatDuration(3_600_000 + 5 * 60_000)).toBe("1h05m");
    expect(formatDuration(-5)).toBe("0s");
  });
});

describe("moments for humans: one format, one zone", () => {
  const at = Date.UTC(2026, 11, 1, 13, 5, 9); // 2026-12-01 13:05:09 UTC
  test("date, 24-hour clock and the zone as an offset", () => {
    expect(formatTime(at, { offsetMinutes: 60 })).toBe("2026-12-01 14:05:09 UTC+1");
    expect(formatTime(at, { offsetMinutes: 0 })).toBe("2026-12-01 13:05:09 UTC");
    expect(formatTime(at, { offsetMinutes: 330 })).toBe("2026-12-01 18:35:09 UTC+5:30");
    expect(formatTime(at, { offsetMinutes: -14 * 60 })).toBe("2026-11-30 23:05:09 UTC-14");
  });
  test("the clock alone, in the same zone", () => {
    expect(formatTime(at, { offsetMinutes: 60, clock: true })).toBe("14:05:09");
  });
  test("the local zone by default", () => {
    const offset = -new Date(at).getTimezoneOffset();
    expect(formatTime(at)).toBe(formatTime(at, { offsetMinutes: offset }));
  });
  test("sorts as text in time order", () => {
    const times = [at, at + 9_000, at + 86_400_000 * 40].map((t) => formatTime(t, { offsetMinutes: 0 }));
    expect([...times].sort()).toEqual(times);
  });
});
