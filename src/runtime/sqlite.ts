/**
 * The SQLite connection for the state store. db0's node-sqlite connector runs on Bun (which
 * implements `node:sqlite`), inside `bun build --compile` binaries, on Deno and on Node >= 22.5;
 * bun:sqlite and better-sqlite3 each break one of those, so the choice lives here.
 */
import { createDatabase, type Database } from "db0";
import nodeSqlite from "db0/connectors/node-sqlite";

/**
 * WAL lets the dashboard read while the runner writes; synchronous=NORMAL under WAL is still
 * crash-safe for the application (only a power cut may lose the last commits) and is about 20x
 * faster than the default. busy_timeout comes first so switching to WAL waits for a
 * concurrent opener instead of failing with SQLITE_BUSY.
 */
const PRAGMAS = "PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";

export async function openSqliteDatabase(file: string): Promise<Database> {
  const database = createDatabase(nodeSqlite({ path: file }));
  try {
    await database.exec(PRAGMAS);
  } catch (err) {
    await database.dispose().catch(() => {});
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `cannot open the SQLite state database ${file}: ${reason}. ` +
        "Check that its folder is writable, or use the json state backend (state_backend: json).",
    );
  }
  return database;
}
