import { describe, expect, test } from "bun:test";
import { clean, cleanKeepingColour, clip, fit, shellQuote, width } from "../../src/text.ts";

describe("clean: nothing a terminal would interpret survives", () => {
  const cases: Array<[string, string, string]> = [
    ["colour (CSI)", "a\x1b[31;1mred\x1b[0m b", "ared b"],
    ["cursor moves and screen clear", "x\x1b[2J\x1b[H\x1b[10;20Hy\x1b[?25l", "xy"],
    ["window title (OSC, BEL)", "a\x1b]0;evil title here\x07b", "ab"],
    ["window title (OSC, ST)", "a\x1b]2;my title\x1b\\b", "ab"],
    ["hyperlink (OSC 8)", "\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\", "link"],
    ["unterminated OSC runs to the end", "ok\x1b]0;title with no end", "ok"],
    ["DCS", "a\x1bP1$r0m\x1b\\b", "ab"],
    ["APC and PM", "a\x1b_payload\x1b\\b\x1b^private\x1b\\c", "abc"],
    ["8-bit CSI and OSC", "a\x9b31mb\x9d0;t\x9cc", "abc"],
    ["reset and charset escapes", "a\x1bcb\x1b(Bc\x1b7d", "abcd"],
    ["lone ESC", "a\x1b", "a"],
    ["C0 controls: backspace, CR, NUL, BEL, DEL", "a\x08\rb\x00c\x07d\x7f", "abcd"],
    ["other C1 controls", "a\x85b\x84c", "abc"],
    ["newline and tab stay", "one\ttwo\nthree\n", "one\ttwo\nthree\n"],
    ["unicode stays", "✓ café 日本 █░ 🎉", "✓ café 日本 █░ 🎉"],
  ];
  for (const [name, input, expected] of cases) test(name, () => expect(clean(input)).toBe(expected));
});

describe("cleanKeepingColour", () => {
  test("colour stays, everything else goes", () => {
    expect(cleanKeepingColour("\x1b[31merror:\x1b[39m bad\x1b]0;title\x07\x1b[2J\r!")).toBe("\x1b[31merror:\x1b[39m bad!");
    expect(cleanKeepingColour("\x1b[38;5;208morange\x1b[0m")).toBe("\x1b[38;5;208morange\x1b[0m");
  });
});

describe("clip", () => {
  test("one line, at most max characters with the ellipsis", () => {
    expect(clip("short", 10)).toBe("short");
    expect(clip("  many\n\n lines\there ", 100)).toBe("many lines here");
    expect(clip("abcdefghij", 5)).toBe("abcd…");
    expect([...clip("abcdefghij", 5)]).toHaveLength(5);
    expect(clip("abc def", 5)).toBe("abc…");
  });
  test("never cuts a character in half", () => {
    expect(clip("🎉🎉🎉🎉", 3)).toBe("🎉🎉…");
  });
});

describe("shellQuote", () => {
  test("plain words stay, the rest is single-quoted", () => {
    expect(shellQuote("my-job_1.yaml")).toBe("my-job_1.yaml");
    expect(shellQuote("my job")).toBe("'my job'");
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(shellQuote("")).toBe("''");
  });
});

describe("width: terminal columns", () => {
  test("colour codes take none, box drawing one, wide characters two", () => {
    expect(width("\x1b[33mhold 4m\x1b[39m")).toBe(7);
    expect(width("██░░")).toBe(4);
    expect(width("日本")).toBe(4);
    expect(width("🎉x")).toBe(3);
    expect(width("é")).toBe(1); // e + combining acute
  });
  test("fit keeps whole characters", () => {
    expect(fit("日本語", 5)).toBe("日本");
    expect(fit("abc", 10)).toBe("abc");
  });
});
