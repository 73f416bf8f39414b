/**
 * Budget admission as a pure function of what the ledger holds for one session key and for
 * the whole deployment. The store runs it inside one atomic section (a SQLite write
 * transaction), so that no two guards, in one process or several, decide on the same snapshot.
 *
 * A call is admitted on its *expected* cost while there is plenty of room. Near a cap, where
 * the *worst-case* costs of the calls in flight no longer fit, only one call may be in flight at
 * a time (the refusal says `concurrency: true`, and the guard waits for the call in flight to
 * settle before asking again), so spend can exceed a cap by at most one call's cost and never
 * by a multiple of the concurrency.
 */

import type { ScopeUsage } from "../store/types.js";

export interface BudgetSnapshot {
  readonly session: ScopeUsage;
  readonly global: ScopeUsage;
  /** The call's judge kind, all keys together within 24 h; read only when its kind has a cap. */
  readonly judge?: ScopeUsage;
}

export interface BudgetCaps {
  /** Per session key and window, micro-dollars; Infinity for none. */
  readonly sessionBudgetMicros: number;
  /** Per session key and window; Infinity for none. */
  readonly sessionMaxCalls: number;
  /** All keys together per global window, micro-dollars; Infinity for none. */
  readonly globalBudgetMicros: number;
  /** The call's judge kind, all keys together per global window, micro-dollars. @default Infinity */
  readonly judgeBudgetMicros?: number;
}

export interface CallEstimate {
  readonly expectedMicros: number;
  readonly worstMicros: number;
}

export type BudgetReason = "session_calls" | "session_budget" | "judge_budget" | "global_budget";

export interface Refusal {
  readonly reason: BudgetReason;
  /** Micro-dollars (or calls, for `session_calls`) already used in the window, reservations included. */
  readonly used: number;
  readonly cap: number;
  /** True when the refusal is because other calls in flight could overspend together. */
  readonly concurrency: boolean;
}

/** Refuses `want` on one money cap, or (undefined) lets it through that cap. */
function refuseOver(
  reason: BudgetReason,
  u: ScopeUsage,
  want: CallEstimate,
  cap: number,
): Refusal | undefined {
  if (cap === Number.POSITIVE_INFINITY) return undefined;
  const used = u.spentMicros + u.openExpectedMicros;
  if (used + want.expectedMicros > cap) {
    // Calls in flight may settle for less than they reserved: while the call would fit without
    // them, the refusal is not final.
    return { reason, used, cap, concurrency: u.openCount > 0 && u.spentMicros + want.expectedMicros <= cap };
  }
  if (u.openCount > 0 && u.spentMicros + u.openWorstMicros + want.worstMicros > cap) {
    return { reason, used, cap, concurrency: true };
  }
  return undefined;
}

export function admit(snapshot: BudgetSnapshot, want: CallEstimate, caps: BudgetCaps): Refusal | null {
  const { session, global, judge } = snapshot;
  if (session.calls + session.openCount + 1 > caps.sessionMaxCalls) {
    return {
      reason: "session_calls",
      used: session.calls + session.openCount,
      cap: caps.sessionMaxCalls,
      concurrency: false,
    };
  }
  return (
    refuseOver("session_budget", session, want, caps.sessionBudgetMicros) ??
    (judge && refuseOver("judge_budget", judge, want, caps.judgeBudgetMicros ?? Number.POSITIVE_INFINITY)) ??
    refuseOver("global_budget", global, want, caps.globalBudgetMicros) ??
    null
  );
}
