/**
 * The Postgres schema, as versioned migrations. Each migration runs once, in order, inside one
 * transaction that holds a database-wide advisory lock, so any number of machines may migrate at
 * once: the first applies it, the others wait and find it applied. DDL in Postgres is
 * transactional, so a migration lands whole or not at all.
 *
 * Everything lives in the `mozart` schema. `apply_step` records one step (fence check, blobs,
 * batch, attempt, hold, job fields, events with their seq) in one statement, so a step is one
 * round trip and the seq counter's row lock is held for microseconds, not for a conversation.
 */
import { BATCH_STATUSES } from "../types.ts";

/** pg_advisory_xact_lock(class, key): the class keeps Mozart's locks apart from the application's. */
export const LOCK_CLASS = 20260513;
export const MIGRATION_LOCK_KEY = 1;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** A readable batch row: what checkBatch() accepts, so summaries and repairs agree with it. */
export const READABLE = `(jsonb_typeof(data) = 'object' AND data->'batch_num' = to_jsonb(n) AND data->>'status' = status
  AND status IN (${BATCH_STATUSES.map((st) => `'${st}'`).join(", ")})
  AND jsonb_typeof(data->'start_item') = 'number' AND jsonb_typeof(data->'end_item') = 'number'
  AND jsonb_typeof(data->'attempts') = 'number' AND jsonb_typeof(data->'cost_usd') = 'number'
  AND jsonb_typeof(data->'validations') = 'array')`;


/**
 * The step function. Version 2 adds the cost ledger's entries (`spend`), written in the same
 * statement as the rest of the step; the text of version 1 is kept as it was.
 */
function applyStep(create: string, spend: string): string {
  return `-- One step: -1 when fenced (nothing written), else the seq of its last event (or the job's last seq).
${create} mozart.apply_step(p_job text, p_step jsonb, p_now double precision, p_at text, p_sid text,
    p_hashes text[], p_gzip boolean[], p_blobs bytea[]) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  f jsonb := p_step->'fence';
  cnt integer := coalesce(jsonb_array_length(p_step->'events'), 0);
  r record;
  last bigint;
BEGIN
  IF p_sid IS NOT NULL THEN
    SELECT seq INTO last FROM mozart.landed WHERE sid = p_sid;
    IF FOUND THEN RETURN last; END IF;
  END IF;
  IF f IS NOT NULL AND jsonb_typeof(f) = 'object' THEN
    SELECT b.owner, b.token, rn.until INTO r FROM mozart.batches b
      LEFT JOIN mozart.runners rn ON rn.job = b.job AND rn.id = f->>'runner'
      WHERE b.job = p_job AND b.n = (f->>'batch')::integer FOR UPDATE OF b;
    IF NOT FOUND OR r.owner IS DISTINCT FROM f->>'runner' OR r.token <> (f->>'token')::bigint OR r.until IS NULL OR r.until <= p_now THEN
      RETURN -1;
    END IF;
  END IF;
${spend}  IF p_hashes IS NOT NULL THEN
    FOR i IN 1 .. coalesce(array_length(p_hashes, 1), 0) LOOP
      INSERT INTO mozart.blobs (hash, gzip, data) VALUES (p_hashes[i], p_gzip[i], p_blobs[i]) ON CONFLICT (hash) DO NOTHING;
    END LOOP;
  END IF;
  IF jsonb_typeof(p_step->'batch') = 'object' THEN
    PERFORM mozart.put_batch(p_job, p_step->'batch');
  END IF;
  IF jsonb_typeof(p_step->'attempt') = 'object' THEN
    INSERT INTO mozart.attempts (job, n, attempt, data)
    VALUES (p_job, (p_step->'attempt'->>'batch_num')::integer, (p_step->'attempt'->>'attempt')::integer, p_step->'attempt')
    ON CONFLICT (job, n, attempt) DO UPDATE SET data = EXCLUDED.data;
  END IF;
  IF jsonb_typeof(p_step->'clearHold') = 'number' THEN
    DELETE FROM mozart.holds WHERE job = p_job AND NOT (until > (p_step->>'clearHold')::double precision);
  END IF;
  IF jsonb_typeof(p_step->'hold') = 'object' THEN
    -- A hold set while another is active keeps the later end.
    INSERT INTO mozart.holds AS h (job, until, data) VALUES (p_job, (p_step->'hold'->>'until')::double precision, p_step->'hold')
    ON CONFLICT (job) DO UPDATE SET data = CASE WHEN h.until > EXCLUDED.until THEN h.data ELSE EXCLUDED.data END, until = greatest(h.until, EXCLUDED.until);
  END IF;
  IF jsonb_typeof(p_step->'job') = 'object' THEN
    -- A damaged record is left as it is for repair, not half-overwritten.
    UPDATE mozart.jobs SET data = data || (p_step->'job') || jsonb_build_object('updated_at', p_at)
      WHERE job = p_job AND jsonb_typeof(data) = 'object';
  END IF;
  IF cnt > 0 THEN
    INSERT INTO mozart.seqs AS s (job, seq) VALUES (p_job, cnt) ON CONFLICT (job) DO UPDATE SET seq = s.seq + cnt RETURNING seq INTO last;
    INSERT INTO mozart.events (job, seq, data)
      SELECT p_job, last - cnt + e.i, jsonb_build_object('seq', last - cnt + e.i, 'at', p_at, 'job_id', p_job) || e.v
      FROM jsonb_array_elements(p_step->'events') WITH ORDINALITY AS e(v, i);
  ELSE
    last := coalesce((SELECT seq FROM mozart.seqs WHERE job = p_job), 0);
  END IF;
  IF p_sid IS NOT NULL THEN
    INSERT INTO mozart.landed (sid, at, seq) VALUES (p_sid, p_now, last);
  END IF;
  RETURN last;
END
$$;
`;
}

const SPEND = `  IF jsonb_typeof(p_step->'spend') = 'array' THEN
    -- The cost ledger: an entry per attempt, keyed by (batch, attempt, runner); a replay replaces, never adds.
    INSERT INTO mozart.spend (job, n, attempt, runner, usd, t_in, t_out, t_cr, t_cw5, t_cw1, data)
      SELECT p_job, (e->>'batch_num')::integer, (e->>'attempt')::integer, e->>'runner', coalesce((e->>'usd')::double precision, 0),
        coalesce((e->'tokens'->>'input')::bigint, 0), coalesce((e->'tokens'->>'output')::bigint, 0), coalesce((e->'tokens'->>'cache_read')::bigint, 0),
        coalesce((e->'tokens'->>'cache_write_5m')::bigint, 0), coalesce((e->'tokens'->>'cache_write_1h')::bigint, 0), e
      FROM jsonb_array_elements(p_step->'spend') AS e
    ON CONFLICT (job, n, attempt, runner) DO UPDATE SET usd = EXCLUDED.usd, t_in = EXCLUDED.t_in, t_out = EXCLUDED.t_out, t_cr = EXCLUDED.t_cr,
      t_cw5 = EXCLUDED.t_cw5, t_cw1 = EXCLUDED.t_cw1, data = EXCLUDED.data;
  END IF;
`;

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: "jobs, batches, attempts, events, leases, control, holds, blobs",
    sql: `
CREATE TABLE mozart.meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO mozart.meta (key, value) VALUES ('id', gen_random_uuid()::text);
CREATE TABLE mozart.jobs (job text PRIMARY KEY, data jsonb NOT NULL);
CREATE TABLE mozart.batches (
  job text NOT NULL, n integer NOT NULL, status text NOT NULL, owner text, token bigint NOT NULL DEFAULT 0,
  attempts integer NOT NULL DEFAULT 0, waits integer NOT NULL DEFAULT 0, cost double precision NOT NULL DEFAULT 0,
  duration double precision NOT NULL DEFAULT 0, data jsonb NOT NULL, PRIMARY KEY (job, n));
CREATE INDEX batches_by_status ON mozart.batches (job, status, n);
CREATE TABLE mozart.attempts (job text NOT NULL, n integer NOT NULL, attempt integer NOT NULL, data jsonb NOT NULL, PRIMARY KEY (job, n, attempt));
CREATE TABLE mozart.events (job text NOT NULL, seq bigint NOT NULL, data jsonb NOT NULL, PRIMARY KEY (job, seq));
CREATE TABLE mozart.seqs (job text PRIMARY KEY, seq bigint NOT NULL);
CREATE TABLE mozart.runners (job text NOT NULL, id text NOT NULL, until double precision NOT NULL, data jsonb NOT NULL, PRIMARY KEY (job, id));
CREATE TABLE mozart.control (job text PRIMARY KEY, data jsonb NOT NULL);
CREATE TABLE mozart.holds (job text PRIMARY KEY, until double precision NOT NULL, data jsonb NOT NULL);
CREATE TABLE mozart.blobs (hash text PRIMARY KEY, gzip boolean NOT NULL, data bytea NOT NULL);
-- Steps that landed, by their id: a step retried after a connection dropped mid-commit is not applied twice.
CREATE TABLE mozart.landed (sid text PRIMARY KEY, at double precision NOT NULL, seq bigint NOT NULL);
CREATE INDEX landed_by_time ON mozart.landed (at);

CREATE FUNCTION mozart.put_batch(p_job text, b jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO mozart.batches (job, n, status, owner, token, attempts, waits, cost, duration, data)
  VALUES (p_job, (b->>'batch_num')::integer, b->>'status', b->>'owner', coalesce((b->>'token')::bigint, 0),
    coalesce((b->>'attempts')::integer, 0), coalesce((b->>'rate_limit_waits')::integer, 0),
    coalesce((b->>'cost_usd')::double precision, 0), coalesce((b->>'duration_ms')::double precision, 0), b)
  ON CONFLICT (job, n) DO UPDATE SET status = EXCLUDED.status, owner = EXCLUDED.owner, token = EXCLUDED.token,
    attempts = EXCLUDED.attempts, waits = EXCLUDED.waits, cost = EXCLUDED.cost, duration = EXCLUDED.duration, data = EXCLUDED.data
$$;

${applyStep("CREATE FUNCTION", "")}`,
  },
  {
    version: 2,
    name: "the cost ledger (spend) and the provider batches (remote_batches)",
    sql: `
CREATE TABLE mozart.spend (
  job text NOT NULL, n integer NOT NULL, attempt integer NOT NULL, runner text NOT NULL, usd double precision NOT NULL,
  t_in bigint NOT NULL, t_out bigint NOT NULL, t_cr bigint NOT NULL, t_cw5 bigint NOT NULL, t_cw1 bigint NOT NULL,
  data jsonb NOT NULL, PRIMARY KEY (job, n, attempt, runner));
CREATE TABLE mozart.remote_batches (job text NOT NULL, key text NOT NULL, submitted_at text NOT NULL, data jsonb NOT NULL, PRIMARY KEY (job, key));
${applyStep("CREATE OR REPLACE FUNCTION", SPEND)}`,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
