/**
 * Spend is kept in fixed-width time buckets per scope, so a rolling-window sum reads a bounded
 * number of rows however many calls were made. A bucket counts while any part of it lies inside
 * the window: a charge therefore leaves the window at most one bucket width late, never early,
 * which errs on the side of the budget.
 */
export const DEFAULT_BUCKET_MS = 60_000;

export function bucketStart(atMs: number, bucketMs: number): number {
  return Math.floor(atMs / bucketMs) * bucketMs;
}

/** The usage scope of a session key, or (null) of all keys together. */
export function scopeOf(sessionKey: string | null): string {
  return sessionKey === null ? "*" : `k:${sessionKey}`;
}

/** The usage scope of a judge kind, all keys together. */
export function judgeScope(judge: string): string {
  return `j:${judge}`;
}
