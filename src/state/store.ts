/**
 * The StateStore over unstorage. Records live under one key each (`jobs:<id>`,
 * `batches:<id>:<000001>`, `attempts:<id>:<000001>:<0001>`), so every write touches exactly one
 * key and costs the same on batch 1 and batch 10,000.
 */
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createStorage, type Storage } from "unstorage";
import { openJsonDriver, openSqliteDriver } from "./drivers.ts";
import { attemptKey, attemptPrefix, batchKey, batchPrefix, encodeJobId, jobKey } from "./keys.ts";
import { acquireLockFile, releaseLockFile } from "./lock.ts";
import type { AttemptRecord, BatchRecord, JobRecord, RunnerInfo, StateStore } from "./types.ts";

export interface StoreOptions {
  kind: "json" | "sqlite";
  /** A folder for json, a database file for sqlite. */
  location: string;
}

export async function openStore(options: StoreOptions): Promise<StateStore> {
  const { kind } = options;
  if (kind !== "json" && kind !== "sqlite") throw new Error(`state: unknown backend ${JSON.stringify(kind)} (use json or sqlite)`);
  const location = resolve(options.location);
  // json keeps locks among its records; sqlite beside the database file.
  const lockDir = kind === "json" ? location : dirname(location);
  await mkdir(lockDir, { recursive: true }).catch((err: unknown) => {
    throw new Error(`state: cannot create the state folder ${lockDir}: ${(err as Error).message}`);
  });
  const driver = kind === "json" ? await openJsonDriver(location) : await openSqliteDriver(location);
  const storage = createStorage({ driver });
  const clearPrefix = async (prefix: string) => {
    if (!driver.clear) throw new Error(`state: the ${driver.name ?? kind} driver cannot clear keys`);
    await driver.clear(prefix, {});
  };
  const lockPath = (jobId: string) => join(lockDir, `${encodeJobId(jobId)}.lock`);
  // Who took each lock through this store, so release checks the same identity.
  const held = new Map<string, RunnerInfo>();

  const read = async <T>(key: string): Promise<T | null> => {
    const value = await storage.getItem(key);
    if (value === null || value === undefined) return null;
    if (typeof value !== "object") {
      throw new Error(`state: record ${key} in ${location} is not valid JSON. Restore it or run \`resume --force\`.`);
    }
    return value as T;
  };

  const readAll = async <T>(prefix: string, depth: number): Promise<T[]> => {
    // Only keys exactly `depth` segments below the prefix: attempts nest under batch numbers.
    const keys = (await storage.getKeys(prefix)).filter((key) => key.split(":").length === prefix.split(":").length + depth);
    const items = await storage.getItems(keys);
    return items.map(({ key, value }) => {
      if (value === null || typeof value !== "object") {
        throw new Error(`state: record ${key} in ${location} is not valid JSON. Restore it or run \`resume --force\`.`);
      }
      return value as T;
    });
  };

  return {
    kind,
    location,

    async getJob(jobId) {
      const job = await read<JobRecord>(jobKey(jobId));
      if (job && job.job_id !== jobId) {
        throw new Error(`state: record ${jobKey(jobId)} in ${location} belongs to job ${JSON.stringify(job.job_id)}, not ${JSON.stringify(jobId)}`);
      }
      return job;
    },
    async putJob(job) {
      await storage.setItem(jobKey(job.job_id), job);
    },
    async listJobs() {
      const jobs = await readAll<JobRecord>("jobs", 1);
      return jobs.sort((a, b) => (a.job_id < b.job_id ? -1 : a.job_id > b.job_id ? 1 : 0));
    },

    getBatch(jobId, batchNum) {
      return read<BatchRecord>(batchKey(jobId, batchNum));
    },
    async putBatch(jobId, batch) {
      await storage.setItem(batchKey(jobId, batch.batch_num), batch);
    },
    async listBatches(jobId) {
      const batches = await readAll<BatchRecord>(batchPrefix(jobId), 1);
      return batches.sort((a, b) => a.batch_num - b.batch_num);
    },

    async appendAttempt(jobId, attempt) {
      // Attempt numbers come from the engine; writing the same number again (a crash between
      // logging an attempt and saving its batch) replaces that one record and nothing else.
      await storage.setItem(attemptKey(jobId, attempt.batch_num, attempt.attempt), attempt);
    },
    async listAttempts(jobId, batchNum) {
      const prefix = attemptPrefix(jobId, batchNum);
      const attempts = await readAll<AttemptRecord>(prefix, batchNum === undefined ? 2 : 1);
      return attempts.sort((a, b) => a.batch_num - b.batch_num || a.attempt - b.attempt);
    },

    async clearBatches(jobId) {
      // Straight to the driver: unstorage's storage.clear(base) only clears mounts that start
      // with base, so on our single root mount clear("batches:x") silently does nothing.
      await clearPrefix(`${batchPrefix(jobId)}:`);
      await clearPrefix(`${attemptPrefix(jobId)}:`);
    },

    async acquireLock(jobId, me) {
      const result = await acquireLockFile(lockPath(jobId), me);
      if (result.ok) held.set(jobId, me);
      return result;
    },
    async releaseLock(jobId) {
      const owner = held.get(jobId) ?? { pid: process.pid, host: hostname() };
      await releaseLockFile(lockPath(jobId), owner);
      held.delete(jobId);
    },

    async close() {
      await storage.dispose();
    },
  };
}
