/**
 * unstorage drivers for the two state backends.
 *
 * json: unstorage's fs drivers write in place, so a reader or a kill -9 can see torn JSON; this
 * one writes temp + fsync + rename. Keys map to paths as in fs-lite (`a:b:c` -> `a/b/c`).
 *
 * sqlite: unstorage's db0 driver over db0's node-sqlite connector. Its getKeys and clear ignore
 * the base and use LIKE (case-insensitive, `_` is a wildcard); here both are prefix ranges on
 * the primary key, so listing one job's batches is exact and clearing one job never wipes
 * another.
 */
import { readFile, readdir, rm, stat, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { defineDriver, type Driver } from "unstorage";
import db0Driver from "unstorage/drivers/db0";
import type { Database } from "db0";
import { openSqliteDatabase } from "../runtime/sqlite.ts";
import { isTempName, removeStaleTempFiles, writeFileAtomic } from "./atomic-file.ts";

const JSON_DRIVER = "mozart-json";
const PATH_TRAVERSE_RE = /\.\.:|\.\.$|^\.\.|:\.\./;

const READ_CONCURRENCY = 64;
const SQL_IN_CHUNK = 500;

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code;

/** Temp files, lock files and anything hidden are bookkeeping, never records. */
const isBookkeeping = (name: string): boolean =>
  name.startsWith(".") || name.endsWith(".lock") || name.endsWith(".takeover") || isTempName(name);

export interface JsonDriverOptions {
  base: string;
}

export const jsonDriver = defineDriver((opts: JsonDriverOptions) => {
  if (!opts?.base) throw new Error(`[${JSON_DRIVER}] option "base" (the state folder) is required`);
  const base = resolve(opts.base);
  const r = (key: string): string => {
    if (PATH_TRAVERSE_RE.test(key)) {
      throw new Error(`[${JSON_DRIVER}] invalid key ${JSON.stringify(key)}: it must not contain .. segments`);
    }
    return join(base, key.replace(/:/g, "/"));
  };

  const listKeys = async (dir: string, prefix: string): Promise<string[]> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
      if (errno(err) === "ENOENT" || errno(err) === "ENOTDIR") return [];
      throw new Error(`[${JSON_DRIVER}] cannot list ${dir}: ${(err as Error).message}`);
    });
    const keys: string[] = [];
    for (const entry of entries) {
      if (isBookkeeping(entry.name)) continue;
      const key = prefix ? `${prefix}:${entry.name}` : entry.name;
      if (entry.isDirectory()) keys.push(...(await listKeys(join(dir, entry.name), key)));
      else keys.push(key);
    }
    return keys;
  };

  const driver: Driver<JsonDriverOptions> = {
    name: JSON_DRIVER,
    options: { base },
    async hasItem(key) {
      const info = await stat(r(key)).catch(() => null);
      return info?.isFile() ?? false;
    },
    async getItem(key) {
      return readFile(r(key), "utf8").catch((err: unknown) => {
        const code = errno(err);
        if (code === "ENOENT" || code === "EISDIR" || code === "ENOTDIR") return null;
        throw new Error(`[${JSON_DRIVER}] cannot read ${r(key)}: ${(err as Error).message}`);
      });
    },
    async getItems(items) {
      // Bounded concurrency: listing 10,000 batches must not open 10,000 files at once (EMFILE).
      const out: { key: string; value: string | null }[] = [];
      for (let i = 0; i < items.length; i += READ_CONCURRENCY) {
        const chunk = items.slice(i, i + READ_CONCURRENCY);
        out.push(...(await Promise.all(chunk.map(async ({ key }) => ({ key, value: await driver.getItem(key) as string | null })))));
      }
      return out;
    },
    async setItem(key, value) {
      await writeFileAtomic(r(key), value).catch((err: unknown) => {
        throw new Error(`[${JSON_DRIVER}] cannot write ${r(key)}: ${(err as Error).message}`);
      });
    },
    async removeItem(key) {
      await unlink(r(key)).catch((err: unknown) => {
        if (errno(err) !== "ENOENT") throw err;
      });
    },
    getKeys(prefix) {
      const key = prefix.replace(/:+$/, "");
      return listKeys(key ? r(key) : base, key);
    },
    async clear(prefix) {
      const key = prefix.replace(/:+$/, "");
      if (key) return rm(r(key), { recursive: true, force: true });
      // Clearing everything keeps lock files: they belong to live runners, not to the data.
      for (const entry of await readdir(base, { withFileTypes: true }).catch(() => [])) {
        if (!isBookkeeping(entry.name)) await rm(join(base, entry.name), { recursive: true, force: true });
      }
    },
  };
  return driver;
});

/** The json driver, after sweeping temp files orphaned by writers that were killed. */
export async function openJsonDriver(folder: string): Promise<Driver> {
  await removeStaleTempFiles(resolve(folder));
  return jsonDriver({ base: folder });
}

/** `[prefix, next)` covers exactly the keys starting with prefix (binary collation). */
function prefixRange(prefix: string): [string, string] {
  if (!prefix) return ["", "\u{10FFFF}"];
  const last = prefix.charCodeAt(prefix.length - 1);
  return [prefix, prefix.slice(0, -1) + String.fromCharCode(last + 1)];
}

const TABLE = "unstorage";

export async function openSqliteDriver(file: string): Promise<Driver> {
  // db0's driver warns once that it is experimental; we pin the version and test it here.
  (globalThis as Record<string, unknown>).__unstorage_db0_experimental_warning__ = true;
  const database: Database = await openSqliteDatabase(file);
  // Same table db0's driver creates lazily; created here so our range queries never race it.
  await database.exec(`CREATE TABLE IF NOT EXISTS ${TABLE} (
    key TEXT PRIMARY KEY, value TEXT, blob BLOB,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP, updated_at TEXT DEFAULT CURRENT_TIMESTAMP)`);
  const inner = db0Driver({ database, tableName: TABLE });
  return {
    ...inner,
    name: "mozart-sqlite",
    async getKeys(prefix) {
      const [from, to] = prefixRange(prefix);
      const { rows } = await database.sql`SELECT key FROM {${TABLE}} WHERE key >= ${from} AND key < ${to} ORDER BY key`;
      return (rows ?? []).map((row) => String(row.key));
    },
    async getItems(items) {
      // One query per 500 keys instead of one per key: listing a big job stays fast.
      const values = new Map<string, string | null>();
      for (let i = 0; i < items.length; i += SQL_IN_CHUNK) {
        const keys = items.slice(i, i + SQL_IN_CHUNK).map((item) => item.key);
        const marks = keys.map(() => "?").join(",");
        const rows = (await database.prepare(`SELECT key, value FROM ${TABLE} WHERE key IN (${marks})`).all(...keys)) as {
          key: string;
          value: string | null;
        }[];
        for (const row of rows) values.set(row.key, row.value);
      }
      return items.map(({ key }) => ({ key, value: values.get(key) ?? null }));
    },
    async clear(prefix) {
      const [from, to] = prefixRange(prefix);
      await database.sql`DELETE FROM {${TABLE}} WHERE key >= ${from} AND key < ${to}`;
    },
    dispose: () => database.dispose(),
  };
}
