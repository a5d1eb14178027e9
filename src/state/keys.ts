/**
 * Storage keys. A job id is user text (spaces, slashes, unicode, `..`), but it becomes a path
 * segment for the json store, a lock file name and a registry file name, so it is encoded once
 * here and every other module uses the encoded form.
 */
import { createHash } from "node:crypto";

/**
 * Ids kept verbatim: lower case only (case-insensitive file systems on macOS and Windows would
 * otherwise merge `Job` and `job`), an alphanumeric first character (no dot files), no `..`
 * and no trailing dot (Windows drops it).
 */
const PLAIN_ID = /^[a-z0-9](?:[a-z0-9_-]|\.(?!\.))*$/;
const MAX_PLAIN_LENGTH = 64;
/** Device names Windows refuses as file names, with or without an extension. */
const WINDOWS_RESERVED = /^(?:con|prn|aux|nul|com[0-9]|lpt[0-9])(?:\.|$)/;

/**
 * A key-safe, collision-free form of a job id. Anything outside the plain set becomes
 * `<slug>~<hash>`: `~` never occurs in a plain id, so an encoded id cannot equal a plain one,
 * and the hash of the exact original text keeps ids that slug alike apart.
 */
export function encodeJobId(jobId: string): string {
  if (jobId.length === 0) throw new Error("state: a job id must not be empty");
  const plain =
    jobId.length <= MAX_PLAIN_LENGTH && PLAIN_ID.test(jobId) && !jobId.endsWith(".") && !WINDOWS_RESERVED.test(jobId);
  if (plain) return jobId;
  const slug = jobId
    .normalize("NFKD")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/, "");
  const hash = createHash("sha256").update(jobId, "utf8").digest("hex").slice(0, 16);
  return `${slug || "job"}~${hash}`;
}

function pad(n: number, width: number, what: string): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`state: ${what} must be a non-negative integer, got ${n}`);
  return String(n).padStart(width, "0");
}

export const jobKey = (jobId: string): string => `jobs:${encodeJobId(jobId)}`;
export const batchPrefix = (jobId: string): string => `batches:${encodeJobId(jobId)}`;
export const batchKey = (jobId: string, batchNum: number): string =>
  `${batchPrefix(jobId)}:${pad(batchNum, 6, "batch_num")}`;
export const attemptPrefix = (jobId: string, batchNum?: number): string =>
  batchNum === undefined
    ? `attempts:${encodeJobId(jobId)}`
    : `attempts:${encodeJobId(jobId)}:${pad(batchNum, 6, "batch_num")}`;
export const attemptKey = (jobId: string, batchNum: number, attempt: number): string =>
  `${attemptPrefix(jobId, batchNum)}:${pad(attempt, 4, "attempt")}`;
