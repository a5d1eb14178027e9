/** Builds job files in a temp folder and runs them through the real CLI. */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { mozart, mozartAsync, tempDir, type CliResult } from "../helpers.ts";
import { pidAlive } from "../processes.ts";

export { pidAlive };

export type Kind = "json" | "sqlite" | "postgres";

export interface Sandbox {
  dir: string;
  home: string;
  env: Record<string, string>;
  /** Write a job file (merged over defaults); returns its path. */
  job(config: Record<string, unknown>, file?: string): string;
  run(args: string[], extraEnv?: Record<string, string>): CliResult;
  start(args: string[], extraEnv?: Record<string, string>): ReturnType<typeof mozartAsync>;
  status(job: string): StatusDoc;
  read(rel: string): string;
  lines(rel: string): string[];
  cleanup(): void;
}

export interface StatusDoc {
  job_id: string;
  status: string;
  error: string | null;
  progress: { completed: number; failed: number; total: number };
  cost_usd: number;
  rate_limit_waits: number;
  batches: Array<{ batch_num: number; status: string; attempts: number; completion_attempts: number; validation_passed: boolean | null; error: string | null; error_category: string | null; last_output: string | null; permission_denials: string[] }>;
}

export function sandbox(kind: Kind): Sandbox {
  const t = tempDir();
  const home = join(t.path, "mozart-home");
  mkdirSync(home, { recursive: true });
  const env = { MOZART_HOME: home, FAKE_CLAUDE_STATE_DIR: join(t.path, "fake-state"), FAKE_CLAUDE_LOG: join(t.path, "claude-calls.jsonl") };
  mkdirSync(env.FAKE_CLAUDE_STATE_DIR, { recursive: true });
  return {
    dir: t.path,
    home,
    env,
    job(config, file = "job.yaml") {
      const full = {
        name: "test-job",
        workspace: "./ws",
        state_backend: kind,
        pause_between_batches_seconds: 0,
        batch: { size: 1, total_items: 3 },
        prompt: { template: "Batch {{ batch_num }} items {{ start_item }}-{{ end_item }}\n" },
        retry: { max_retries: 2, base_delay_seconds: 0.05, max_delay_seconds: 0.2, completion_delay_seconds: 0 },
        ...config,
      };
      const path = join(t.path, file);
      writeFileSync(path, stringify(full));
      return path;
    },
    run: (args, extraEnv = {}) => mozart(args, { cwd: t.path, env: { ...env, ...extraEnv } }),
    start: (args, extraEnv = {}) => mozartAsync(args, { cwd: t.path, env: { ...env, ...extraEnv } }),
    status(job) {
      const r = mozart(["status", job, "--json"], { cwd: t.path, env });
      if (r.code !== 0) throw new Error(`status failed (${r.code}): ${r.stderr}`);
      return JSON.parse(r.stdout) as StatusDoc;
    },
    read: (rel) => readFileSync(join(t.path, rel), "utf8"),
    lines(rel) {
      try {
        return readFileSync(join(t.path, rel), "utf8").split("\n").filter(Boolean);
      } catch {
        return [];
      }
    },
    cleanup: t.cleanup,
  };
}

/** A `command` backend script: logs each call to calls.log, then runs `body` (sh). */
export function commandBackend(body: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "command",
    command: `echo "$MOZART_BATCH_NUM $MOZART_ATTEMPT" >> {job_dir}/calls.log; ${body}`,
    timeout_seconds: 20,
    ...extra,
  };
}

