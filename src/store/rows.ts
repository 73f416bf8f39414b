import type { DecisionId } from "./decision-ids.js";
import type { GuardConfigRecord, StoredReservation } from "./types.js";

/*
 * Rows as the stores and readers of both databases read them. The drivers return the same
 * columns with different types: better-sqlite3 numbers (bigints where a statement asks for
 * them) and 0/1 for flags; pg (no type parsers set) int8 and numeric as strings, booleans as
 * booleans. Every mapper here reads all of them alike.
 */

export type Row = Record<string, unknown>;
export const num = (v: unknown): number => Number(v ?? 0);
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
/** A flag: 1 (or 1n) in SQLite, true in PostgreSQL. */
export const flag = (v: unknown): boolean => Number(v) === 1;

/** An integer column as a decision id: a number while exact, else a bigint. */
export function idOf(v: unknown): DecisionId {
  const b = BigInt(v as string | number | bigint);
  return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

/** A `reservations` row as a reservation. */
export function reservationOf(r: Row): StoredReservation {
  return {
    id: String(r.ref),
    ownerId: String(r.owner_id),
    sessionKey: String(r.session_key),
    judge: String(r.judge),
    model: String(r.model),
    expectedMicros: num(r.expected_micros),
    worstMicros: num(r.worst_micros),
    createdMs: num(r.created_ms),
    remote: flag(r.remote),
    ttlMs: num(r.ttl_ms),
    turns: num(r.turns),
    transcriptChars: num(r.transcript_chars),
    transcriptHash: String(r.transcript_hash),
    orphanedMs: numOrNull(r.orphaned_ms),
    chargedMicros: numOrNull(r.charged_micros),
    decisionId: r.decision_id == null ? null : idOf(r.decision_id),
  };
}

/** A `guard_config` row as a record. */
export function configOf(r: Row): GuardConfigRecord {
  return {
    startedMs: num(r.started_ms),
    ownerId: String(r.owner_id),
    mode: String(r.mode),
    sessionBudgetMicros: numOrNull(r.session_budget_micros),
    sessionMaxCalls: numOrNull(r.session_max_calls),
    budgetWindowMs: num(r.budget_window_ms),
    dailyBudgetMicros: numOrNull(r.daily_budget_micros),
    judgeBudgetMicros: numOrNull(r.judge_budget_micros),
    judgeBudgets:
      typeof r.judge_budgets === "string"
        ? (JSON.parse(r.judge_budgets) as Record<string, number | null>)
        : null,
  };
}
