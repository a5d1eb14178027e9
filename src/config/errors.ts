/** Configuration problems, each pointing at file:line:col and saying what to do. */

export interface ConfigIssue {
  message: string;
  file: string;
  line: number;
  column: number;
  /** Dotted key path, e.g. `batch.size` or `validations[0].path`. */
  path: string;
  hint?: string;
}

export class ConfigError extends Error {
  readonly exitCode = 2;
  constructor(readonly issues: ConfigIssue[]) {
    super(issues.map(formatIssue).join("\n"));
    this.name = "ConfigError";
  }
}

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out;
}

export function formatIssue(i: ConfigIssue): string {
  const where = `${i.file}:${i.line}:${i.column}`;
  const key = i.path ? ` ${i.path}:` : "";
  return `${where}${key} ${i.message}${i.hint ? `\n    hint: ${i.hint}` : ""}`;
}

/** Damerau-free Levenshtein: enough for "did you mean" on short key names. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return best !== undefined && bestDist <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
