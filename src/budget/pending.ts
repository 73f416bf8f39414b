import type { SkipReason } from "../domain/decision.js";
import type { Usage } from "../pricing/prices.js";
import type { StoredReservation } from "../store/types.js";
import type { CallEstimate } from "./admission.js";

/** What every decision record names of a call: its key, judge kind, model and transcript. */
export interface CallSubject {
  readonly sessionKey: string;
  readonly judge: string;
  readonly model: string;
  /** The transcript judged: sizes and a hash, never text. */
  readonly turns: number;
  readonly transcriptChars: number;
  readonly transcriptHash: string;
}

/** A call's estimate; `expected` null: nothing to learn from (a call known only by its ledger row). */
export interface PendingEstimate extends CallEstimate {
  readonly expected: Usage | null;
}

/**
 * One judge call from its admission to its settlement: the record the admission queue fills in
 * (when, whether reserved, in shadow mode why it would have been refused) and the settlement
 * charges. A call known only by its ledger row (admitted by a guard that is gone) is one too.
 */
export interface PendingCall extends CallSubject {
  readonly reservationId: string;
  /**
   * Settled by id through `settle` (see {@link ReservationRecord.remote}), and how long it may
   * wait for that once its owner is gone.
   */
  readonly remote: boolean;
  readonly ttlMs: number;
  /** What the call is known to cost (a replay): charged when the judge reports nothing. */
  readonly knownUsage: Usage | undefined;
  /** Remade while the call waits for admission: a settlement may have taught the estimator. */
  estimate: PendingEstimate;
  /** Why enforce mode would have skipped the call (in shadow mode), or null. */
  shadowReason: SkipReason | null;
  /** Admission time on the guard's clock: the charge lands in this time's bucket. */
  at: number;
  /** False when the ledger failed at admission and the call runs unguarded (onError "open"). */
  reserved: boolean;
}

/** A reservation known only by its ledger row: admitted by a guard that is gone (a restarted sidecar). */
export function pendingCallOfRow(r: StoredReservation): PendingCall {
  return {
    reservationId: r.id,
    sessionKey: r.sessionKey,
    judge: r.judge,
    model: r.model,
    turns: r.turns ?? 0,
    transcriptChars: r.transcriptChars ?? 0,
    transcriptHash: r.transcriptHash ?? "",
    remote: r.remote ?? false,
    ttlMs: r.ttlMs ?? 0,
    knownUsage: undefined,
    estimate: { expectedMicros: r.expectedMicros, worstMicros: r.worstMicros, expected: null },
    shadowReason: null,
    at: r.createdMs,
    reserved: true,
  };
}
