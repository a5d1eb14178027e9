/**
 * An error the user can act on: one clear message, an optional hint, and the exit code it maps
 * to. Anything else that escapes a command is a bug and is shown with its stack only under -v.
 */
export class MozartError extends Error {
  readonly exitCode: number;
  readonly hint?: string;
  constructor(message: string, opts: { exitCode?: number; hint?: string } = {}) {
    super(message);
    this.name = "MozartError";
    this.exitCode = opts.exitCode ?? 1;
    this.hint = opts.hint;
  }
}

/** Exit codes, documented in `mozart --help` and the README. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  paused: 130,
} as const;

/** The errno code of a failed system call (`ENOENT`, `EACCES`, …), if it is one. */
export function errno(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === "string" ? code : undefined;
}
