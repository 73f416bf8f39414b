/*
 * The words of a decision the guard records, shared by every layer above: the stores write
 * them, the budgets, the guard and the report read them. Defined here, below the store, so that
 * a store imports the domain and never the other way round.
 */

/**
 * Why a request was not judged (the ledger's `reason` of a skipped decision, or, in shadow mode,
 * of a judged one). Each but `duplicate` is one short-circuit, with its error code beside it.
 */
export type SkipReason =
  /** The session repeats a canned reply (`STUCK_SESSION`): a verdict would say nothing new. */
  | "stuck_session"
  /** The key has spent its budget for the window (`SESSION_BUDGET`, `JUDGE_GUARD_SESSION_BUDGET_USD`). */
  | "session_budget"
  /** The key has made its most judge calls for the window (`SESSION_CALLS`, `JUDGE_GUARD_SESSION_MAX_CALLS`). */
  | "session_calls"
  /** The judge kind has spent its budget for the last 24 hours, all keys together (`JUDGE_BUDGET`). */
  | "judge_budget"
  /** All keys together have spent the daily budget (`GLOBAL_BUDGET`, `JUDGE_GUARD_DAILY_BUDGET_USD`). */
  | "global_budget"
  /**
   * An identical request was judged before (or is in flight, with `share`): its verdict was
   * reused at no cost. Recorded as skipped, but the outcome is `reused`, not `skipped`.
   */
  | "duplicate"
  /**
   * The ledger failed and `JUDGE_GUARD_ON_ERROR=closed` (the default) skips rather than spend
   * what it cannot record (`LEDGER_UNAVAILABLE`).
   */
  | "ledger_error";

/**
 * Where a decision's charge came from: `reported`, the judge's own cost; `computed`, its tokens
 * x the price table; `estimate`, nothing was reported and the reservation's estimate was charged.
 */
export type CostSource = "reported" | "computed" | "estimate";
