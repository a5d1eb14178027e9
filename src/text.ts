/**
 * Text Mozart shows people but did not write itself: a backend's output, an error from a model
 * or a shell. Such text may carry terminal control sequences (a window title, a screen clear, a
 * cursor move, a hyperlink) that must never reach the user's terminal, so everything that came
 * from outside goes through `clean` before it is printed. Pure: values in, values out.
 */

/**
 * One pass over everything a terminal would interpret rather than print (ECMA-48):
 * - control strings: OSC (`ESC ]`, window titles and hyperlinks), DCS (`ESC P`), SOS, PM, APC,
 *   in their 7- and 8-bit forms, up to BEL or ST (`ESC \` or 0x9C); an unterminated one runs to
 *   the end of the text, as it would in the terminal;
 * - CSI (`ESC [` or 0x9B): parameters, intermediates and the final byte (colours, cursor moves);
 * - any other escape (`ESC 7`, `ESC c`, `ESC ( B`) and a lone ESC;
 * - the remaining C0 controls except newline and tab (carriage return included: it would let a
 *   line overwrite what was printed before it), DEL, and the C1 controls.
 * node's util.stripVTControlCharacters leaves an OSC title's text and its BEL, DCS strings,
 * lone ESCs and every C0 control in place, so it is not enough here.
 */
const CONTROL = new RegExp(
  [
    String.raw`(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[\s\S]*?(?:\x07|\x1b\\|\x9c|$)`,
    String.raw`(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?`,
    String.raw`\x1b[\x20-\x2f]*[\x30-\x7e]?`,
    String.raw`[\x00-\x08\x0b-\x1f\x7f-\x9f]`,
  ].join("|"),
  "g",
);

/** The text with every terminal control sequence and control character removed; `\n` and `\t` stay. */
export function clean(text: string): string {
  return text.replace(CONTROL, "");
}

const COLOUR = /^\x1b\[[\d;:]*m$/;

/**
 * `clean`, except that colour and style codes (SGR, `ESC [ … m`) stay: for lines that mix our own
 * colours with outside text. A colour cannot move the cursor, retitle the window or clear the
 * screen; everything that can is removed.
 */
export function cleanKeepingColour(text: string): string {
  return text.replace(CONTROL, (seq) => (COLOUR.test(seq) ? seq : ""));
}

/**
 * One line of at most `max` characters, ellipsis included: whitespace runs (newlines too)
 * become one space. Counts code points, so an emoji or a CJK character is never cut in half.
 */
export function clip(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  const chars = [...flat];
  if (chars.length <= max) return flat;
  if (max <= 1) return "…".slice(0, Math.max(0, max));
  return `${chars.slice(0, max - 1).join("").trimEnd()}…`;
}

/** Shell-quote an argument for display, so a printed command can be pasted into a shell. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Columns `text` takes on a terminal: control sequences (our own colours included) take none,
 * combining marks and zero-width characters none, East Asian wide and fullwidth characters and
 * emoji two, everything else (box drawing like █ and ░ too) one.
 */
export function width(text: string): number {
  let n = 0;
  for (const ch of clean(text)) n += charWidth(ch.codePointAt(0)!);
  return n;
}

/** The longest start of `text` that fits in `columns`, never splitting a character. */
export function fit(text: string, columns: number): string {
  let used = 0;
  let end = 0;
  for (const ch of text) {
    const w = charWidth(ch.codePointAt(0)!);
    if (used + w > columns) break;
    used += w;
    end += ch.length;
  }
  return text.slice(0, end);
}

const ZERO_WIDTH = /^[\p{Mn}\p{Me}\p{Cf}]$/u;
const WIDE = /^[\p{Extended_Pictographic}]$/u;

function charWidth(cp: number): number {
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return 0;
  if (cp < 0x300) return 1;
  const ch = String.fromCodePoint(cp);
  if (ZERO_WIDTH.test(ch)) return 0;
  if (isEastAsianWide(cp)) return 2;
  // Pictographs below U+1F000 (©, ™, ☀) are one column unless asked otherwise with U+FE0F.
  if (cp >= 0x1f000 && WIDE.test(ch)) return 2;
  return 1;
}

/** East Asian Wide (W) and Fullwidth (F) ranges, as terminals apply them. */
function isEastAsianWide(cp: number): boolean {
  return (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x231a && cp <= 0x231b) ||
    (cp >= 0x2329 && cp <= 0x232a) ||
    (cp >= 0x23e9 && cp <= 0x23ec) ||
    cp === 0x23f0 ||
    cp === 0x23f3 ||
    (cp >= 0x25fd && cp <= 0x25fe) ||
    (cp >= 0x2614 && cp <= 0x2615) ||
    (cp >= 0x2648 && cp <= 0x2653) ||
    cp === 0x267f ||
    cp === 0x2693 ||
    cp === 0x26a1 ||
    (cp >= 0x26aa && cp <= 0x26ab) ||
    (cp >= 0x26bd && cp <= 0x26be) ||
    (cp >= 0x26c4 && cp <= 0x26c5) ||
    cp === 0x26ce ||
    cp === 0x26d4 ||
    cp === 0x26ea ||
    (cp >= 0x26f2 && cp <= 0x26f3) ||
    cp === 0x26f5 ||
    cp === 0x26fa ||
    cp === 0x26fd ||
    cp === 0x2705 ||
    (cp >= 0x270a && cp <= 0x270b) ||
    cp === 0x2728 ||
    cp === 0x274c ||
    cp === 0x274e ||
    (cp >= 0x2753 && cp <= 0x2755) ||
    cp === 0x2757 ||
    (cp >= 0x2795 && cp <= 0x2797) ||
    cp === 0x27b0 ||
    cp === 0x27bf ||
    (cp >= 0x2b1b && cp <= 0x2b1c) ||
    cp === 0x2b50 ||
    cp === 0x2b55 ||
    (cp >= 0x2e80 && cp <= 0x303e) ||
    (cp >= 0x3041 && cp <= 0x33ff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0xa000 && cp <= 0xa4cf) ||
    (cp >= 0xa960 && cp <= 0xa97f) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe10 && cp <= 0xfe19) ||
    (cp >= 0xfe30 && cp <= 0xfe6f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1b000 && cp <= 0x1b2ff) ||
    (cp >= 0x1f004 && cp <= 0x1f004) ||
    cp === 0x1f0cf ||
    cp === 0x1f18e ||
    (cp >= 0x1f191 && cp <= 0x1f19a) ||
    (cp >= 0x1f200 && cp <= 0x1f251) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  );
}

/** Money as people read it: four decimals below a dollar (API calls cost fractions of a cent), two above. */
export function formatUsd(usd: number): string {
  return `$${usd.toFixed(Math.abs(usd) < 1 ? 4 : 2)}`;
}

/** A token count in a few characters: 950, 12.3k, 4.56M. */
export function formatTokens(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 2 : 1).replace(/\.?0+$/, "")}k`;
  return `${(n / 1_000_000).toFixed(2).replace(/\.?0+$/, "")}M`;
}
