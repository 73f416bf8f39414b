/**
 * Decision rows are keyed by time: `id = ts * 1024 + slot`, so a time range of decisions is a
 * range of the table's own B-tree, and no time index has to be written with every decision.
 * Ids stay below 2^53 (exact in JavaScript) until the year 2248.
 *
 * Several processes may record decisions in the same millisecond: each starts at its own slot
 * and, where an id is taken, tries the next one, spilling into later milliseconds only past
 * 1024 decisions in one. An id is therefore never below `ts * 1024`, and a query for the
 * decisions since T can start its scan at `T * 1024` and still filter on `ts` exactly.
 */
export const DECISION_ID_SLOTS = 1024;

/** The lowest id a decision made at or after `ms` can have. */
export function firstDecisionId(ms: number): number {
  return Math.max(0, Math.floor(ms)) * DECISION_ID_SLOTS;
}
