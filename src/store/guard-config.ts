import type { GuardConfigRecord } from "./types.js";

/** The caps a guard enforces, as resolved from its options (micro-dollars; Infinity: none). */
export interface ResolvedCaps {
  readonly sessionBudgetMicros: number;
  readonly sessionMaxCalls: number;
  /** The rolling window of the per-key caps. */
  readonly budgetWindowMs: number;
  /** All keys together per 24 h. */
  readonly dailyBudgetMicros: number;
  /** Every judge kind `judgeBudgetsMicros` does not name, all keys together per 24 h. */
  readonly judgeBudgetMicros: number;
  readonly judgeBudgetsMicros: Readonly<Record<string, number>>;
}

/** The caps of a guard as its configuration record names them. */
export interface GuardCaps extends ResolvedCaps {
  readonly mode: string;
  readonly clock: { now(): number };
}

const capOrNull = (n: number): number | null => (Number.isFinite(n) ? n : null);

/** The caps of named judge kinds as the ledger keeps them: JSON with its keys sorted, or null. */
export function judgeBudgetsText(c: Pick<GuardConfigRecord, "judgeBudgets">): string | null {
  const caps = c.judgeBudgets;
  if (caps == null || Object.keys(caps).length === 0) return null;
  return JSON.stringify(
    Object.fromEntries(Object.entries(caps).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  );
}

/** Whether two records hold the same caps (their times and owners aside). */
export function sameCaps(a: GuardConfigRecord, b: GuardConfigRecord): boolean {
  return (
    a.mode === b.mode &&
    a.sessionBudgetMicros === b.sessionBudgetMicros &&
    a.sessionMaxCalls === b.sessionMaxCalls &&
    a.budgetWindowMs === b.budgetWindowMs &&
    a.dailyBudgetMicros === b.dailyBudgetMicros &&
    (a.judgeBudgetMicros ?? null) === (b.judgeBudgetMicros ?? null) &&
    judgeBudgetsText(a) === judgeBudgetsText(b)
  );
}

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
    judgeBudgetMicros: capOrNull(o.judgeBudgetMicros),
    judgeBudgets:
      Object.keys(o.judgeBudgetsMicros).length === 0
        ? null
        : Object.fromEntries(Object.entries(o.judgeBudgetsMicros).map(([j, m]) => [j, capOrNull(m)])),
  };
}
