/** Where a job's state lives: `state_path`, or `<workspace>/.mozart`. */
import { join } from "node:path";
import type { JobConfig } from "../config/schema.ts";

export function stateFolder(config: Pick<JobConfig, "state_path" | "workspace">): string {
  return config.state_path ?? join(config.workspace, ".mozart");
}

/**
 * The store location: the folder itself for JSON, a database file inside it for SQLite, and for
 * Postgres `$NAME` of the variable holding the URL (what the registry keeps: never the URL).
 */
export function stateLocation(config: Pick<JobConfig, "state_path" | "workspace" | "state_backend"> & { state_url_env?: string }): string {
  if (config.state_backend === "postgres") return `$${config.state_url_env ?? "MOZART_DATABASE_URL"}`;
  const folder = stateFolder(config);
  return config.state_backend === "sqlite" ? join(folder, "state.db") : folder;
}

/** True when the location is a path on this machine (json, sqlite), not a database reached by URL. */
export function isLocalLocation(location: string): boolean {
  return !location.startsWith("$") && !/^postgres(?:ql)?:\/\//i.test(location);
}

/** Where a runner keeps attempt output files: beside the state, or for a database in the state folder on this machine. */
export function outputFolder(config: Pick<JobConfig, "state_path" | "workspace">): string {
  return join(stateFolder(config), "output");
}
