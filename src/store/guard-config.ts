import type { GuardConfigRecord } from "./types.js";

/** The caps a guard enforces, as resolved from its options. */
export interface GuardCaps {
  readonly mode: string;
  readonly sessionBudgetMicros: number;
  readonly sessionMaxCalls: number;
  readonly budgetWindowMs: number;
  readonly dailyBudgetMicros: number;
  readonly clock: { now(): number };
}

const capOrNull = (n: number): number | null => (Number.isFinite(n) ? n : null);

/** The record of a guard's caps at its start (on its own clock, the decisions' clock). */
export function guardConfigRecord(o: GuardCaps, ownerId: string): GuardConfigRecord {
  return {
    startedMs: o.clock.now(),
    ownerId,
    mode: o.mode,
    sessionBudgetMicros: capOrNull(o.sessionBudgetMicros),
    sessionMaxCalls: capOrNull(o.sessionMaxCalls),
    budgetWindowMs: o.budgetWindowMs,
    dailyBudgetMicros: capOrNull(o.dailyBudgetMicros),
  };
}
