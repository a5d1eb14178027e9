/**
 * The SQLite connection for the state store: `node:sqlite`, which Bun implements (also inside
 * `bun build --compile` binaries) and Deno and Node >= 22.5 ship; bun:sqlite and better-sqlite3
 * each break one of those. It is opened directly rather than through db0's connector because
 * the state needs synchronous transactions with cached statements, and reading commands must
 * open read-only without creating folders or files (db0's connector always creates both).
 */
import { existsSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";

export type SqliteDatabase = DatabaseSync;

/**
 * WAL lets readers (`status`, `logs -f`, the dashboard) read while a runner writes;
 * synchronous=NORMAL under WAL is crash-safe for the application (only a power cut may lose the
 * last commits) and about 20x faster than the default. busy_timeout comes first so switching to
 * WAL waits for a concurrent opener instead of failing with SQLITE_BUSY.
 */
const WRITER_PRAGMAS = "PRAGMA busy_timeout=10000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;";

export class SqliteOpenError extends Error {
  constructor(
    message: string,
    readonly reason: "not_a_database" | "missing" | "cannot_open",
  ) {
    super(message);
    this.name = "SqliteOpenError";
  }
}

export function openSqlite(file: string, opts: { readOnly?: boolean } = {}): SqliteDatabase {
  if (opts.readOnly && !existsSync(file)) throw new SqliteOpenError(`${file} does not exist`, "missing");
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(file, opts.readOnly ? { readOnly: true } : {});
    db.exec(opts.readOnly ? "PRAGMA busy_timeout=10000;" : WRITER_PRAGMAS);
    // Reads the header: a file that is not a database fails here, not at the first query.
    db.prepare("SELECT count(*) FROM sqlite_master").get();
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch {
      // already unusable
    }
    const reason = err instanceof Error ? err.message : String(err);
    if (/not a database|malformed|file is encrypted/i.test(reason)) {
      throw new SqliteOpenError(`${file} is not a readable SQLite database (${reason})`, "not_a_database");
    }
    // A read-only folder without the WAL's -shm file: a database closed cleanly has no WAL to
    // read, so it can be read as an immutable file.
    if (opts.readOnly && /unable to open|readonly|read-only|cannot open/i.test(reason)) {
      try {
        const ro = new DatabaseSync(`file:${encodeURI(file)}?immutable=1`, { readOnly: true });
        ro.prepare("SELECT count(*) FROM sqlite_master").get();
        return ro;
      } catch {
        // fall through to the original error
      }
    }
    throw new SqliteOpenError(`cannot open ${file}: ${reason}`, "cannot_open");
  }
}
