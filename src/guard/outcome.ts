import type { SkipReason } from "../domain/decision.js";
import type { JudgeSkippedError, SkipCode } from "../errors.js";
import type { Usage } from "../pricing/prices.js";

/** The judge ran; `costUsd` is what was charged to the budgets. */
export interface JudgedOutcome<T> {
  readonly status: "judged";
  readonly value: T;
  readonly costUsd: number;
  /** Token usage as reported by the judge, where it reported any. */
  readonly usage: Usage | null;
  /** What was reserved before the call: 0 when the ledger failed and it ran unguarded (`onError: "open"`). */
  readonly reservedUsd: number;
  /** In shadow mode, why enforce mode would have skipped this call; otherwise null. */
  readonly shadowReason: SkipReason | null;
}

/**
 * An identical request was judged before (or, with `share`, is being judged): its verdict is
 * reused at no cost.
 */
export interface ReusedOutcome<T> {
  readonly status: "reused";
  readonly value: T;
  readonly savedUsd: number;
}

/** The judge was not called and nothing was spent. */
export interface SkippedOutcome {
  readonly status: "skipped";
  readonly reason: Exclude<SkipReason, "duplicate">;
  readonly code: SkipCode;
  /** The error to throw, for callers that surface skips as errors. */
  readonly error: JudgeSkippedError;
  /** What the call was estimated to cost. */
  readonly savedUsd: number;
}

export type Outcome<T> = JudgedOutcome<T> | ReusedOutcome<T> | SkippedOutcome;

export interface RunOptions<T> {
  /** Reads the cost from this judge's result; overrides the guard's `usageOf`. */
  readonly usageOf?: (result: T) => import("../pricing/usage.js").ReportedCost | undefined;
  /**
   * For replays of recorded traffic: what this call really cost when it ran. The guard decides
   * without it; it is used as the saving when the call is skipped, and as the charge when the
   * judge function reports no usage.
   */
  readonly knownUsage?: Usage;
  /**
   * Share the verdict of an identical call in flight instead of making this one. Off by
   * default: concurrent identical calls are independent (each judged and charged), as
   * Phantom's multi-judge votes must be. A repeat after an identical call has completed reuses
   * its verdict either way (within `JUDGE_GUARD_VERDICT_TTL`). The sidecar never shares.
   */
  readonly share?: boolean;
}

export interface CallOptions<T> extends RunOptions<T> {
  /**
   * Produces the value to return instead of throwing when the call is skipped, e.g. Phantom's
   * gate answer `{evolve: false}`, whose errors would otherwise fail towards running.
   */
  readonly substitute?: (skip: SkippedOutcome) => T;
}

/** What `call` returns for an outcome: the judge's value, the skip's substitute, or its error thrown. */
export function outcomeValue<T>(outcome: Outcome<T>, options: CallOptions<T>): T {
  if (outcome.status !== "skipped") return outcome.value;
  if (options.substitute) return options.substitute(outcome);
  throw outcome.error;
}

/** A skip's reason in the ledger and its code on the error, one to one. */
export const SKIP_CODES: Readonly<Record<SkippedOutcome["reason"], SkipCode>> = {
  stuck_session: "STUCK_SESSION",
  session_budget: "SESSION_BUDGET",
  session_calls: "SESSION_CALLS",
  judge_budget: "JUDGE_BUDGET",
  global_budget: "GLOBAL_BUDGET",
  ledger_error: "LEDGER_UNAVAILABLE",
};

/** The reason of a skip code (the inverse of {@link SKIP_CODES}). */
export function skipReasonOf(code: SkipCode): SkippedOutcome["reason"] {
  return (
    (Object.keys(SKIP_CODES) as SkippedOutcome["reason"][]).find((r) => SKIP_CODES[r] === code) ??
    "ledger_error"
  );
}
