import { describe, expect, test } from "bun:test";
import { parseResetTime } from "../../src/engine/limits.ts";

// Wednesday 2026-08-05 10:00 UTC. Lisbon is UTC+1 (summer), Bogota UTC-5, Recife UTC-3, Colombo UTC+5:30.
const NOW = Date.UTC(2026, 7, 5, 10, 0);
const utc = (...a: [number, number, number, number, number]) => Date.UTC(...a);

describe("parseResetTime: every form the CLI has printed", () => {
  const rows: Array<[string, string, number | null, string?]> = [
    ["hour with IANA zone", "You've hit your limit · resets 3pm (Europe/Lisbon)", utc(2026, 7, 5, 14, 0)],
    ["hour:minute, no zone → the local zone", "You've hit your session limit · resets 3:45pm", utc(2026, 7, 5, 15, 45), "UTC"],
    ["no zone, local zone New York (EDT)", "You've hit your Opus limit · resets 3:45pm", utc(2026, 7, 5, 19, 45), "America/New_York"],
    ["month day at hour (zone)", "You've hit your limit · resets Apr 23 at 4pm (America/Recife)", utc(2027, 3, 23, 19, 0)],
    ["a date this year still ahead", "You've hit your limit · resets Aug 7 at 4pm (America/Recife)", utc(2026, 7, 7, 19, 0)],
    ["weekday 12:00am = next Monday midnight", "You've hit your weekly limit · resets Mon 12:00am", utc(2026, 7, 10, 0, 0), "UTC"],
    ["weekday equal to today, time ahead = today", "resets Wed 11pm", utc(2026, 7, 5, 23, 0), "UTC"],
    ["weekday equal to today, time past = next week", "resets Wed 9am", utc(2026, 7, 12, 9, 0), "UTC"],
    ["'Your limit will reset at'", "Claude usage limit reached. Your limit will reset at 3pm (America/Bogota).", utc(2026, 7, 5, 20, 0)],
    ["pipe + epoch seconds", "Claude AI usage limit reached|1750708800", 1750708800_000],
    ["ISO date time UTC (gateway spend limit)", "spend limit reached (daily; resets 2026-08-09 00:00 UTC)", utc(2026, 7, 9, 0, 0)],
    ["API workspace cap 'regain access on … at … UTC'", "You will regain access on 2026-04-01 at 00:00 UTC.", utc(2026, 3, 1, 0, 0)],
    ["5-hour limit (v1.0.x)", "5-hour limit reached ∙ resets 2am", utc(2026, 7, 6, 2, 0), "UTC"],
    ["24-hour limit", "24-hour limit reached • resets 11:45pm", utc(2026, 7, 5, 23, 45), "UTC"],
    ["out of extra usage, half-hour zone, already past → tomorrow", "You're out of extra usage · resets 11:30am (Asia/Colombo)", utc(2026, 7, 6, 6, 0)],
    ["12pm is noon", "resets 12pm", utc(2026, 7, 5, 12, 0), "UTC"],
    ["12am is midnight (tomorrow)", "resets 12am", utc(2026, 7, 6, 0, 0), "UTC"],
    ["24-hour clock without am/pm", "resets 18:30", utc(2026, 7, 5, 18, 30), "UTC"],
    ["unknown zone falls back to the local one", "resets 3pm (Mars/Olympus_Mons)", utc(2026, 7, 5, 15, 0), "UTC"],
    ["zone in parentheses wins over the local zone", "resets 3pm (UTC)", utc(2026, 7, 5, 15, 0), "Asia/Tokyo"],
  ];
  for (const [name, text, expected, zone] of rows) {
    test(name, () => {
      expect(parseResetTime(text, NOW, zone ? { timeZone: zone } : {})).toBe(expected);
    });
  }
});

describe("parseResetTime: past times and time zones", () => {
  test("a time already past today means tomorrow", () => {
    expect(parseResetTime("resets 9am", NOW, { timeZone: "UTC" })).toBe(utc(2026, 7, 6, 9, 0));
    expect(parseResetTime("resets 9:57am", NOW, { timeZone: "UTC" })).toBe(utc(2026, 7, 6, 9, 57));
  });
  test("a time that passed a moment ago (the message is a few seconds old) is now, not tomorrow", () => {
    expect(parseResetTime("resets 10am", NOW + 30_000, { timeZone: "UTC" })).toBe(utc(2026, 7, 5, 10, 0));
  });
  test("'today' is the day in the printed zone, not in UTC", () => {
    // 23:30 UTC on Aug 5 is already 08:30 on Aug 6 in Tokyo; 9am Tokyo is then 30 minutes away.
    const late = utc(2026, 7, 5, 23, 30);
    expect(parseResetTime("resets 9am (Asia/Tokyo)", late)).toBe(utc(2026, 7, 6, 0, 0));
  });
  test("the DST change between now and the reset is honoured", () => {
    // Saturday 2026-03-07 (EST, UTC-5); Monday 2026-03-09 is after the switch to EDT (UTC-4).
    expect(parseResetTime("resets Mon 9am (America/New_York)", utc(2026, 2, 7, 12, 0))).toBe(utc(2026, 2, 9, 13, 0));
  });
  test("a month/day that passed long ago means next year", () => {
    expect(parseResetTime("resets Jan 2 at 9am (UTC)", utc(2026, 11, 30, 12, 0))).toBe(utc(2027, 0, 2, 9, 0));
  });
  test("epoch in milliseconds is accepted too", () => {
    expect(parseResetTime("usage limit reached|1750708800123", NOW)).toBe(1750708800123);
    // Eleven or twelve digits are still seconds (far future: the hold cap takes care of them).
    expect(parseResetTime("usage limit reached|10000000000", NOW)).toBe(10_000_000_000_000);
  });
});

describe("parseResetTime: nothing to parse", () => {
  for (const text of [
    "You've hit your limit",
    "Claude AI usage limit reached",
    "resets soon",
    "resets 5",
    "resets 13pm",
    "processed 1403 items, 429 done",
    "",
  ]) {
    test(JSON.stringify(text), () => expect(parseResetTime(text, NOW, { timeZone: "UTC" })).toBeNull());
  }
});
