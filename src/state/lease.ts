/**
 * Lease timing. A runner renews its lease every HEARTBEAT; a runner that misses it for TTL (dead,
 * frozen, cut off) loses the job's lease on every host, and its batches go to the next claimer.
 * MOZART_LEASE_TTL_SECONDS overrides the TTL (short in tests; longer on very loaded machines).
 */
export const DEFAULT_LEASE_TTL_MS = 30_000;

export function leaseTtlMs(env: Record<string, string | undefined>): number {
  const v = Number(env.MOZART_LEASE_TTL_SECONDS);
  return Number.isFinite(v) && v > 0 ? Math.max(200, v * 1000) : DEFAULT_LEASE_TTL_MS;
}

/** Renew well before expiry: a third of the TTL, so two missed beats still keep the lease. */
export function heartbeatMs(ttlMs: number): number {
  return Math.max(50, Math.floor(ttlMs / 3));
}
