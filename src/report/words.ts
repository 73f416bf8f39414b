import type { StuckEvidence } from "../detection/evidence.js";
import type { SkipReason } from "../domain/decision.js";

/** Why a call was not judged, for people (the ledger's `reason` of a skipped decision). */
export const SKIP_REASON_TEXT: Readonly<Record<SkipReason, string>> = {
  stuck_session:
    "the session was stuck: its agent repeated a canned reply, so a verdict would say nothing new",
  session_budget: "the key had spent its budget for the window",
  session_calls: "the key had made its most judge calls for the window",
  judge_budget: "the judge kind had spent its budget for the day, all keys together",
  global_budget: "all keys together had spent the daily budget",
  duplicate: "the same request was judged moments before: its verdict was reused",
  ledger_error:
    "the ledger failed, and the guard skips rather than spend what it cannot record (JUDGE_GUARD_ON_ERROR=closed)",
};

/** What a stuck episode was opened on (the ledger's `episodes.evidence`), for people. */
export const EVIDENCE_TEXT: Readonly<Record<StuckEvidence, string>> = {
  known_canned: "a known canned line",
  zero_cost: "repeats the runtime answered at no cost (bounces)",
  repeats: "the same reply, repeated",
};
