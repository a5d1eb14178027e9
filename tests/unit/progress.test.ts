import { describe, expect, test } from "bun:test";
import { formatDuration } from "../../src/cli/progress.ts";

describe("durations for humans", () => {
  test("seconds, minutes, hours", () => {
    expect(formatDuration(0)).toBe("0s");
    expect(formatDuration(12_400)).toBe("12s");
    expect(formatDuration(61_000)).toBe("1m01s");
    expect(formatDuration(3_600_000 + 5 * 60_000)).toBe("1h05m");
  });
});
