/**
 * Opens a job's state store. A new driver is one file under drivers/ plus one line here.
 * Reading commands open it read-only: they never create a folder or a database.
 */
import jsonDriver from "./drivers/json.ts";
import postgresDriver from "./drivers/postgres.ts";
import sqliteDriver from "./drivers/sqlite.ts";
import type { DriverFactory, DriverOptions } from "./driver.ts";
import type { StateBackend, StateStore } from "./types.ts";

const DRIVERS: Record<StateBackend, DriverFactory> = {
  json: jsonDriver,
  sqlite: sqliteDriver,
  postgres: postgresDriver,
};

export interface StoreOptions extends DriverOptions {
  kind: StateBackend;
}

export function openStore(options: StoreOptions): Promise<StateStore> {
  const { kind, ...opts } = options;
  const driver = DRIVERS[kind];
  if (!driver) return Promise.reject(new Error(`state: unknown backend ${JSON.stringify(kind)} (use sqlite, json or postgres)`));
  return driver(opts);
}
