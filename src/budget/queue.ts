import { judgeScope, scopeOf } from "../store/buckets.js";
import type { SafeLedger } from "../store/safe.js";
import type { BudgetLedger, ReservationLedger } from "../store/types.js";
import type { Clock } from "../util/clock.js";
import { admit, type Refusal } from "./admission.js";
import type { BudgetLimits } from "./limits.js";
import type { PendingCall, PendingEstimate } from "./pending.js";

/** What an admission decided. `at`: when, on the guard's clock. */
export type Admission =
  | { readonly kind: "admitted"; readonly call: PendingCall }
  | { readonly kind: "refused"; readonly refusal: Refusal; readonly at: number }
  /** The ledger failed and `onError` is "closed". */
  | { readonly kind: "unavailable"; readonly cause: unknown; readonly at: number };

export interface QueueOptions {
  readonly clock: Clock;
  /** Shadow mode: every call is admitted and reserved; a refusal only names its reason. */
  readonly shadow: boolean;
  /** When the ledger fails: "closed" refuses the call, "open" admits it unreserved. */
  readonly onError: "closed" | "open";
  /** The guard holding the reservations. */
  readonly ownerId: string;
}

/** A call waiting for admission near a cap. */
interface Waiter {
  readonly call: PendingCall;
  /** performance.now() past which it stops waiting. */
  readonly deadline: number;
  /** Its estimate now (a settlement meanwhile may have taught the estimator). */
  readonly estimate: () => PendingEstimate;
  resolve: (a: Admission) => void;
  /** The scope that refused it last (see {@link scopesOf}). */
  blockedBy?: string;
}

const POLL_MS = 50;

/** The budget scopes a call counts against: everything, its key and its judge kind. */
const scopesOf = (call: PendingCall): readonly string[] => [
  "*",
  scopeOf(call.sessionKey),
  judgeScope(call.judge),
];

/** The scope a refusal was made for, as {@link scopesOf} names it. */
function refusedScope(call: PendingCall, reason: Refusal["reason"]): string {
  if (reason === "global_budget") return "*";
  if (reason === "judge_budget") return judgeScope(call.judge);
  return scopeOf(call.sessionKey);
}

/**
 * Admission: each attempt checks the caps and reserves the call's estimate in one atomic
 * section of the ledger. A call that only the calls in flight stand in the way of waits in line
 * (FIFO), retried after each settlement here ({@link wake}) and on a poll timer (a settlement in
 * another process shows only in the ledger), until its deadline.
 */
export class AdmissionQueue {
  readonly #ledger: SafeLedger<BudgetLedger & ReservationLedger>;
  readonly #limits: BudgetLimits;
  readonly #o: QueueOptions;
  /** Admissions waiting for calls in flight to settle, in arrival order. */
  #queue: Waiter[] = [];
  #timer: NodeJS.Timeout | undefined;
  /**
   * Reservations whose admission failed with the ledger (a lost connection at COMMIT): the row
   * may have been written after all, though its call was skipped (closed) or runs unreserved
   * (open, charged by its own decision). Withdrawn once the ledger answers, before anyone takes
   * such a row for a live call and charges it.
   */
  #uncertain: string[] = [];

  constructor(
    ledger: SafeLedger<BudgetLedger & ReservationLedger>,
    limits: BudgetLimits,
    options: QueueOptions,
  ) {
    this.#ledger = ledger;
    this.#limits = limits;
    this.#o = options;
  }

  /** Admits `call` now, or once the calls in flight leave room for it, or refuses it. */
  admit(call: PendingCall, deadline: number, estimate: () => PendingEstimate): Promise<Admission> {
    const w: Waiter = { call, deadline, estimate, resolve: () => {} };
    const first = this.#try(w);
    if (first !== "wait") return Promise.resolve(first);
    return new Promise((resolve) => {
      w.resolve = resolve;
      this.#queue.push(w);
      this.#schedule(POLL_MS);
    });
  }

  /** A call settled here: the calls waiting may fit now. */
  wake(): void {
    if (this.#queue.length === 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#schedule(0);
  }

  /**
   * One admission attempt in one atomic section: admitted, refused for good, or "wait" when only
   * calls in flight stand in the way (and there is time left to wait).
   */
  #try(w: Waiter): Admission | "wait" {
    const { call } = w;
    const { shadow } = this.#o;
    const store = this.#ledger.store;
    const now = this.#o.clock.now();
    const admitted = (reserved: boolean, shadowReason = call.shadowReason): Admission => {
      call.at = now;
      call.reserved = reserved;
      call.shadowReason = shadowReason;
      return { kind: "admitted", call };
    };
    let refusal: Refusal | null;
    const withdrawn = this.#uncertain.length;
    try {
      refusal = store.atomically(() => {
        if (withdrawn > 0) this.#withdraw(withdrawn);
        const usage = this.#limits.usage(call.sessionKey, now, call.judge);
        const r = admit(usage, call.estimate, this.#limits.caps(call.judge));
        if (r !== null && !shadow) return r;
        store.openReservation({
          id: call.reservationId,
          ownerId: this.#o.ownerId,
          sessionKey: call.sessionKey,
          judge: call.judge,
          model: call.model,
          expectedMicros: call.estimate.expectedMicros,
          worstMicros: call.estimate.worstMicros,
          createdMs: now,
          remote: call.remote,
          ttlMs: call.ttlMs,
          turns: call.turns,
          transcriptChars: call.transcriptChars,
          transcriptHash: call.transcriptHash,
        });
        return r;
      });
    } catch (e) {
      this.#ledger.failed(e, "admission");
      this.#uncertain.push(call.reservationId);
      if (this.#o.onError === "closed") return { kind: "unavailable", cause: e, at: now };
      return admitted(false);
    }
    if (withdrawn > 0) this.#uncertain.splice(0, withdrawn);
    if (refusal === null) return admitted(true);
    if (shadow) return admitted(true, call.shadowReason ?? refusal.reason);
    if (refusal.concurrency && performance.now() < w.deadline) {
      w.blockedBy = refusedScope(call, refusal.reason);
      return "wait";
    }
    return { kind: "refused", refusal, at: now };
  }

  /** Withdraws the reservations of failed admissions, if the ledger answers (on the heartbeat and at close). */
  withdrawUncertain(): void {
    const n = this.#uncertain.length;
    if (n > 0 && this.#ledger.attempt((s) => s.atomically(() => this.#withdraw(n))))
      this.#uncertain.splice(0, n);
  }

  /** Deletes the first `n` uncertain reservations, inside the caller's section; true when done. */
  #withdraw(n: number): true {
    for (const id of this.#uncertain.slice(0, n)) this.#ledger.store.deleteReservation(id);
    return true;
  }

  #schedule(ms: number): void {
    if (this.#timer !== undefined || this.#queue.length === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pump();
    }, ms);
  }

  /**
   * Retries waiting admissions in arrival order. Each round stops trying a scope at its first
   * refusal, so a round costs at most one atomic section per waiting key, not one per waiting
   * call.
   */
  #pump(): void {
    const blocked = new Set<string>();
    const still: Waiter[] = [];
    for (const w of this.#queue) {
      const scopeBlocked = scopesOf(w.call).some((scope) => blocked.has(scope));
      if (scopeBlocked && performance.now() < w.deadline) {
        still.push(w);
        continue;
      }
      w.call.estimate = w.estimate();
      const r = this.#try(w);
      if (r !== "wait") {
        w.resolve(r);
        continue;
      }
      still.push(w);
      if (w.blockedBy !== undefined) blocked.add(w.blockedBy);
    }
    this.#queue = still;
    this.#schedule(POLL_MS);
  }
}
