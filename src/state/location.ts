/** Where a job's state lives: `state_path`, or `<workspace>/.mozart`. */
import { join } from "node:path";
import type { JobConfig } from "../config/schema.ts";

export function stateFolder(config: Pick<JobConfig, "state_path" | "workspace">): string {
  return config.state_path ?? join(config.workspace, ".mozart");
}

/** The store location: the folder itself for JSON, a database file inside it for SQLite. */
export function stateLocation(config: Pick<JobConfig, "state_path" | "workspace" | "state_backend">): string {
  const folder = stateFolder(config);
  return config.state_backend === "sqlite" ? join(folder, "state.db") : folder;
}
