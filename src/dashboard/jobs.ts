/**
 * The dashboard's view of the jobs: registry lookups and a small cache of read-only stores.
 * A store is opened read-only (it never takes a job's lease or lock, so a running job never
 * waits for the dashboard), reused across requests, and reopened when its state was deleted
 * or replaced. Only control requests open a job's store for writing, for the one write.
 */
import { dirname } from "node:path";
import { accountHoldView, configAccount, readAccountHold, type AccountHoldView } from "../state/accounts.ts";
import { findInDatabase, sharedDatabase } from "../state/database.ts";
import { isLocalLocation } from "../state/location.ts";
import { findJob, type RegistryEntry } from "../state/registry.ts";
import { openStore } from "../state/store.ts";
import type { JobRecord, StateStore } from "../state/types.ts";
import { ApiError } from "./http.ts";
import { MAX_ID_LENGTH } from "./schemas.ts";

/**
 * Stores kept open, least recently used evicted first. A read-only SQLite store holds up to three
 * descriptors (the database, its -wal and -shm) and a Postgres one a pool; a JSON store holds
 * none between reads, so many more of those are kept. Reopening costs a schema read per database,
 * which a dashboard cycling through more jobs than it keeps would pay on nearly every request.
 */
const CACHE_LIMIT = { json: 1024, other: 128 } as const;
const limitOf = (key: string) => (key.startsWith("json:") ? CACHE_LIMIT.json : CACHE_LIMIT.other);

export interface OpenedJob {
  entry: RegistryEntry;
  store: StateStore;
  record: JobRecord;
}

/** Control characters (C0, DEL, C1) and lone surrogates have no place in a job id. */
const BAD_ID = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udfff]/u;

export function checkJobId(id: string): void {
  if (!id || id.length > MAX_ID_LENGTH || BAD_ID.test(id)) {
    throw new ApiError(400, "bad_request", `invalid job id: job ids are job names, 1 to ${MAX_ID_LENGTH} printable characters`);
  }
}

/** The job's state folder on this machine; a job in a shared database has none (undefined). */
export function stateFolderOf(entry: RegistryEntry): string | undefined {
  if (!isLocalLocation(entry.state_location)) return undefined;
  return entry.state_backend === "sqlite" ? dirname(entry.state_location) : entry.state_location;
}

interface ConfigFacts {
  concurrency: number | null;
  account: string | undefined;
}

export class JobStores {
  private readonly cache = new Map<string, Promise<StateStore>>();
  private readonly facts = new Map<string, ConfigFacts>();
  private readonly entries = new Map<string, { at: number; entry: RegistryEntry }>();

  constructor(readonly home: string) {}

  async entry(id: string): Promise<RegistryEntry> {
    checkJobId(id);
    // A registry entry changes when a job is registered again or forgotten: a second's reuse is safe.
    const hit = this.entries.get(id);
    if (hit && Date.now() - hit.at < 1000) return hit.entry;
    const entry =
      (await findJob(this.home, id).catch((e: unknown) => {
        throw new ApiError(500, "registry_unreadable", (e as Error).message);
      })) ?? (await findInDatabase(id, process.env, await this.sharedStore()).catch(() => null));
    if (!entry) throw new ApiError(404, "not_found", `no job ${JSON.stringify(id)} is registered on this machine`);
    if (this.entries.size >= 2000) this.entries.clear();
    this.entries.set(id, { at: Date.now(), entry });
    return entry;
  }

  /** The hold on the account the job's claude sessions run on (the quota guard), as the API shows it. */
  async accountHold(store: StateStore, record: JobRecord): Promise<AccountHoldView | null> {
    const entry = await this.entry(record.job_id).catch(() => null);
    const account = entry?.account ?? (await this.configFacts(store, record)).account;
    const h = account ? await readAccountHold(this.home, account, Date.now()) : null;
    return h ? accountHoldView(h) : null;
  }

  /** The job's registry entry, its read-only store and its record; 404 when any is missing. */
  async open(id: string): Promise<OpenedJob> {
    const entry = await this.entry(id);
    const store = await this.store(entry);
    const record = await store.getJob(entry.job_id);
    if (!record) throw new ApiError(404, "not_found", `job ${JSON.stringify(id)} has no record in ${entry.state_location}: its state was deleted (\`mozart forget ${id}\` removes the entry)`);
    return { entry, store, record };
  }

  /** The shared database's store (MOZART_DATABASE_URL), kept open like any job's, or undefined without one. */
  async sharedStore(): Promise<StateStore | undefined> {
    const location = sharedDatabase(process.env);
    if (!location) return undefined;
    return this.store({ job_id: "(the shared database)", state_backend: "postgres", state_location: location, config_path: "", workspace: "", updated_at: "" }).catch(() => undefined);
  }

  async store(entry: RegistryEntry): Promise<StateStore> {
    const key = `${entry.state_backend}:${entry.state_location}`;
    const cached = this.cache.get(key);
    if (cached) {
      // Least recently used goes first: a job someone watches keeps its store however many others are opened.
      this.cache.delete(key);
      this.cache.set(key, cached);
      const store = await cached.catch(() => null);
      if (store && (await store.checkIdentity().then(() => true, () => false))) return store;
      if (this.cache.get(key) === cached) this.cache.delete(key);
      await store?.close().catch(() => {});
    }
    const opening = openStore({ kind: entry.state_backend, location: entry.state_location, readOnly: true });
    this.cache.set(key, opening);
    try {
      const store = await opening;
      const kind = key.startsWith("json:");
      const same = [...this.cache.keys()].filter((k) => k.startsWith("json:") === kind);
      for (const oldest of same.slice(0, Math.max(0, same.length - limitOf(key)))) {
        const p = this.cache.get(oldest)!;
        this.cache.delete(oldest);
        void p.then((s) => s.close()).catch(() => {});
      }
      return store;
    } catch (e) {
      this.cache.delete(key);
      throw new ApiError(404, "not_found", `the state of job ${JSON.stringify(entry.job_id)} cannot be opened: ${(e as Error).message}`);
    }
  }

  /** Opens the job's store for writing, for one control request, and closes it again. */
  async withWritable<T>(entry: RegistryEntry, fn: (store: StateStore, record: JobRecord) => Promise<T>): Promise<T> {
    const store = await openStore({ kind: entry.state_backend, location: entry.state_location }).catch((e: unknown) => {
      throw new ApiError(409, "conflict", `the state of job ${JSON.stringify(entry.job_id)} cannot be written: ${(e as Error).message}`);
    });
    try {
      const record = await store.getJob(entry.job_id);
      if (!record) throw new ApiError(404, "not_found", `job ${JSON.stringify(entry.job_id)} has no record in ${entry.state_location}`);
      return await fn(store, record);
    } finally {
      await store.close().catch(() => {});
    }
  }

  /** The job's configured concurrency, from its stored config (cached per config). */
  async concurrencyOf(store: StateStore, record: JobRecord): Promise<number | null> {
    return (await this.configFacts(store, record)).concurrency;
  }

  /** What the page needs of a job's config, read once per config: its concurrency (for ETAs) and the account its sessions run on. */
  private async configFacts(store: StateStore, record: JobRecord): Promise<ConfigFacts> {
    const key = record.config_hash;
    const known = this.facts.get(key);
    if (known) return known;
    const text = await store.getBlob(record.config_blob).catch(() => null);
    let concurrency: number | null = null;
    try {
      const parsed = text ? (JSON.parse(text) as { concurrency?: unknown }) : null;
      concurrency = typeof parsed?.concurrency === "number" ? parsed.concurrency : null;
    } catch {
      concurrency = null;
    }
    const facts = { concurrency, account: configAccount(text, process.env) };
    if (this.facts.size > 1000) this.facts.clear();
    this.facts.set(key, facts);
    return facts;
  }

  async close(): Promise<void> {
    const stores = [...this.cache.values()];
    this.cache.clear();
    await Promise.all(stores.map((p) => p.then((s) => s.close()).catch(() => {})));
  }
}
