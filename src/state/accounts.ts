/**
 * The quota guard shared across jobs: a subscription limit (session or weekly) is the account's,
 * not the job's, so its hold is recorded per account under `<MOZART_HOME>/accounts/`, and every
 * job on the machine that runs claude on that account honours it. The account is the Claude
 * config folder (CLAUDE_CONFIG_DIR) or, for an API key, a hash of the key (never the key).
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import { findJob } from "./registry.ts";
import type { JobRecord, StateStore } from "./types.ts";

export interface AccountHold {
  account: string;
  until: number;
  reason: string;
  /** The job that met the limit. */
  job_id: string;
  limit?: string;
  set_at: number;
}

type Env = Record<string, string | undefined>;

/** Which account claude runs on in this environment: its key's hash, its config folder, or the default login. */
export function accountOf(env: Env): string {
  if (env.ANTHROPIC_API_KEY) return `key-${createHash("sha256").update(env.ANTHROPIC_API_KEY).digest("hex").slice(0, 16)}`;
  if (env.CLAUDE_CONFIG_DIR) return `config-${createHash("sha256").update(env.CLAUDE_CONFIG_DIR).digest("hex").slice(0, 16)}`;
  return "default-login";
}

/** The account a job's sessions run on (claude_cli only): the runner's environment with backend.env over it. */
export function jobAccount(config: { backend: { type: string; env?: Record<string, string> } }, env: Env): string | undefined {
  return config.backend.type === "claude_cli" ? accountOf({ ...env, ...config.backend.env }) : undefined;
}

const fileOf = (home: string, account: string) => join(home, "accounts", `${account}.json`);

/** The account's hold, when one is recorded and not over at `now`. */
export async function readAccountHold(home: string, account: string, now: number): Promise<AccountHold | null> {
  try {
    const h = JSON.parse(await readFile(fileOf(home, account), "utf8")) as AccountHold;
    return typeof h.until === "number" && h.until > now ? h : null;
  } catch {
    return null;
  }
}

/** Records a hold for the account; a later reset already recorded is kept. */
export async function writeAccountHold(home: string, hold: AccountHold): Promise<void> {
  const current = await readAccountHold(home, hold.account, hold.set_at);
  if (current && current.until >= hold.until) return;
  await writeFileAtomic(fileOf(home, hold.account), JSON.stringify(hold), { mkdir: true });
}

/** Every account hold not over at `now`, soonest end first: what `list` shows. */
export async function listAccountHolds(home: string, now: number): Promise<AccountHold[]> {
  const names = await readdir(join(home, "accounts")).catch(() => [] as string[]);
  const holds = await Promise.all(names.filter((n) => n.endsWith(".json")).map((n) => readAccountHold(home, n.slice(0, -5), now)));
  return holds.filter((h): h is AccountHold => h !== null).sort((a, b) => a.until - b.until);
}

/** An account's hold as `list --json`, `status --json` and the dashboard show it. */
export interface AccountHoldView {
  account: string;
  until: string;
  reason: string;
  limit: string | null;
  /** The job that met the limit. */
  met_by: string;
}

export function accountHoldView(h: AccountHold): AccountHoldView {
  return { account: h.account, until: new Date(h.until).toISOString(), reason: h.reason, limit: h.limit ?? null, met_by: h.job_id };
}

/** The account a job's sessions run on, from its stored config (JSON text): see jobAccount. */
export function configAccount(configText: string | null, env: Env): string | undefined {
  try {
    const config = configText ? (JSON.parse(configText) as Parameters<typeof jobAccount>[0] | null) : null;
    return config?.backend ? jobAccount(config, env) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The hold on the account a job's claude sessions run on, when there is one: the account its
 * runner registered, else the one `env` would run the job's config on.
 */
export async function jobAccountHold(o: { home: string; store: StateStore; record: JobRecord; env: Env; now: number }): Promise<AccountHold | null> {
  const account = (await findJob(o.home, o.record.job_id).catch(() => null))?.account ?? configAccount(await o.store.getBlob(o.record.config_blob).catch(() => null), o.env);
  return account ? readAccountHold(o.home, account, o.now) : null;
}
