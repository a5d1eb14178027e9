import { EXIT, MozartError } from "../errors.ts";

export const jsonArg = {
  json: { type: "boolean", alias: "j", description: "Write one JSON document to stdout (human messages go to stderr)" },
} as const;

/** Flags every command accepts, wherever they appear on the command line. */
export const globalArgs = {
  verbose: { type: "boolean", alias: "v", description: "Show details: each attempt's command and output tail; stack traces on errors" },
  quiet: { type: "boolean", alias: "q", description: "Print only results and errors" },
  ...jsonArg,
  version: { type: "boolean", alias: "V", description: "Print the version and exit" },
  color: { type: "boolean", description: "Force colour on or off (--no-color); NO_COLOR is respected" },
} as const;

/**
 * A batch number given on the command line (`--batch 3`), checked before anything is loaded so
 * a typo is a usage error, not "job not found". Only digits: Number() would take "", " 3", "1e1"
 * and "0x2". Whether the batch exists is for the caller, which knows how many the job has.
 */
export function batchNumber(value: string | undefined, flag = "--batch"): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) {
    throw new MozartError(`${flag} expects a batch number, got "${value}"`, { exitCode: EXIT.usage, hint: `batches are numbered from 1, for example: ${flag} 3` });
  }
  return Number(value);
}

/** `--shard k/n`: this runner's share of a job split n ways (batch b is in shard ((b-1) mod n) + 1). */
export function shardOf(value: string | undefined): { index: number; count: number } | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count || count > 100_000) {
    throw new MozartError(`--shard expects K/N with 1 <= K <= N, got "${value}"`, { exitCode: EXIT.usage, hint: "for example --shard 2/3 runs batches 2, 5, 8, …; in a Kubernetes Indexed Job: --shard $((JOB_COMPLETION_INDEX + 1))/N" });
  }
  return { index, count };
}
