import type { Logger } from "../log/logger.js";
import type { PriceTable, Usage } from "../pricing/prices.js";
import type { ReportedCost } from "../pricing/usage.js";
import type { SafeLedger } from "../store/safe.js";
import type {
  BudgetLedger,
  CostSource,
  DecisionRecord,
  EstimateStats,
  ReservationLedger,
} from "../store/types.js";
import type { Clock } from "../util/clock.js";
import { toMicros } from "../util/money.js";
import type { BudgetSnapshot } from "./admission.js";
import type { BudgetAlerts } from "./alerts.js";
import type { CostEstimator } from "./estimator.js";
import type { BudgetLimits } from "./limits.js";
import type { PendingCall } from "./pending.js";

/** What a call is charged, and why. */
export interface Charge {
  readonly micros: number;
  /** null: nothing was charged (a failed call that reported nothing). */
  readonly source: CostSource | null;
  /** Tokens x price, where the call gave tokens. */
  readonly computedMicros: number | null;
  /** The tokens charged for, if known. */
  readonly usage: Usage | null;
  /** The model priced: the one that really ran, where the judge says. */
  readonly model: string;
  /** The judge reported nothing usable: its estimate was charged. */
  readonly unreported: boolean;
}

/**
 * What a settled call is charged. The judge's own cost wins (it knows its cache use, retries and
 * subagents, which its token counts may not show); tokens x price only without one; the
 * estimate when nothing was reported, rather than pretend the call was free.
 */
export function chargeOf(
  call: PendingCall,
  failed: boolean,
  reported: ReportedCost | undefined,
  prices: PriceTable,
): Charge {
  const usage = reported?.usage ?? (failed ? null : (call.knownUsage ?? null));
  // Price at the model that really ran, where the judge says (an escalated Haiku call is Sonnet's price).
  const model = reported?.model ?? call.model;
  const computed = usage ? prices.costMicros(model, usage) : null;
  const cost = reported?.costUsd;
  // A reported cost is finite and >= 0; a zero beside tokens that cost something is a
  // placeholder (a result type with a cost field nobody filled), not a free call.
  const validCost = typeof cost === "number" && Number.isFinite(cost) && cost >= 0 && (cost > 0 || !computed);
  const charge = (micros: number, source: CostSource | null, unreported = false): Charge => ({
    micros,
    source,
    computedMicros: computed,
    usage,
    model,
    unreported,
  });
  if (validCost && !reported?.estimated) return charge(toMicros(cost), "reported");
  if (computed !== null) return charge(computed, "computed");
  // The guard's own estimate (a call whose client never settled).
  if (validCost) return charge(toMicros(cost), "estimate");
  if (failed) return charge(0, null);
  return charge(call.estimate.expectedMicros, "estimate", true);
}

function scaleUsage(u: Usage, by: number): Usage {
  return {
    inputTokens: Math.ceil(u.inputTokens * by),
    outputTokens: Math.ceil(u.outputTokens * by),
  };
}

export interface SettlementParts {
  readonly prices: PriceTable;
  readonly estimator: CostEstimator;
  readonly limits: BudgetLimits;
  readonly alerts: BudgetAlerts;
  readonly clock: Clock;
  readonly log: Logger;
  /** Runs after each settlement: calls waiting for admission may fit now. */
  readonly settled: () => void;
}

/**
 * Settlement: releases a call's reservation, charges the budgets what it really cost and records
 * its decision, in one atomic section; teaches the estimator; checks the budget alerts. A
 * settlement the ledger refuses is kept and written once it answers again ({@link retry}).
 */
export class Settlements {
  judged = 0;
  failed = 0;
  chargedMicros = 0;
  readonly #ledger: SafeLedger<BudgetLedger & ReservationLedger>;
  readonly #p: SettlementParts;
  /** Settlements the ledger refused; retried on the heartbeat so no reservation leaks. */
  readonly #unsettled: Array<() => void> = [];
  /** Estimator rows learned since they were last written to the ledger. */
  readonly #learned = new Map<string, EstimateStats>();

  constructor(ledger: SafeLedger<BudgetLedger & ReservationLedger>, parts: SettlementParts) {
    this.#ledger = ledger;
    this.#p = parts;
  }

  /** Settlements the ledger refused, waiting to be written again. */
  get unsettled(): number {
    return this.#unsettled.length;
  }

  /**
   * Settles to the actual cost. `started`: performance.now() when the call started. `keep`: the
   * reservation's row stays (charged), so that a settlement arriving after all corrects it.
   */
  settle(
    call: PendingCall,
    decision: "judged" | "failed",
    reported: ReportedCost | undefined,
    started: number,
    keep = false,
  ): { micros: number; usage: Usage | null; moot?: true } {
    const failed = decision === "failed";
    const c = chargeOf(call, failed, reported, this.#p.prices);
    const charged = c.micros;
    if (c.unreported)
      this.#p.log.debug(
        { judge: call.judge, model: call.model },
        "judge result has no usage: charged the estimate",
      );
    const record: DecisionRecord = {
      ts: call.at,
      sessionKey: call.sessionKey,
      judge: call.judge,
      model: c.model,
      decision,
      reason: call.shadowReason,
      shadow: call.shadowReason !== null,
      reservedMicros: call.reserved ? call.estimate.expectedMicros : 0,
      chargedMicros: charged,
      savedMicros: 0,
      inputTokens: c.usage?.inputTokens ?? 0,
      outputTokens: c.usage?.outputTokens ?? 0,
      cacheReadTokens: c.usage?.cacheReadTokens ?? 0,
      cacheWriteTokens: (c.usage?.cacheWriteTokens ?? 0) + (c.usage?.cacheWrite1hTokens ?? 0),
      turns: call.turns,
      transcriptChars: call.transcriptChars,
      transcriptHash: call.transcriptHash,
      durationMs: Math.round(performance.now() - started),
      episodeId: null,
      costSource: c.source,
      computedMicros: c.computedMicros,
    };
    if (!failed) this.#learn(call, c);
    // Budget alerts compare the usage after this charge with the caps: read it inside the
    // settlement's transaction, which holds the lock already, rather than in separate reads.
    let after: BudgetSnapshot | undefined;
    let moot = false;
    const store = this.#ledger.store;
    const alerts = this.#p.alerts;
    const write = () =>
      store.atomically(() => {
        const id = call.reservationId;
        const prior = !call.reserved ? undefined : keep ? store.reservation(id) : store.takeReservation(id);
        if (keep && call.reserved && (prior === undefined || prior.chargedMicros !== null)) {
          // Timed out here, but settled (or charged) through another guard on the ledger meanwhile.
          moot = true;
          return;
        }
        if (!keep && call.reserved && prior === undefined) {
          // Its reservation is gone: settled already, through another guard sharing the ledger (a
          // call admitted on one sidecar and settled on another), or by a write of this one whose
          // commit was not acknowledged. Charging it again would count the call twice.
          moot = true;
          return;
        }
        if (!keep && prior?.chargedMicros != null && prior.decisionId !== null) {
          // Charged at its estimate meanwhile (its owner was presumed gone, or it timed out):
          // correct that charge to this one, in the same decision.
          store.addUsage(call.sessionKey, prior.createdMs, charged - prior.chargedMicros, 0, call.judge);
          store.updateDecision(prior.decisionId, record);
        } else {
          if (charged > 0 || !failed) store.addUsage(call.sessionKey, call.at, charged, 1, call.judge);
          const decisionId = store.recordDecision(record);
          // Kept, so that a settlement arriving after all (its client was only slow) corrects it.
          if (keep && prior !== undefined) store.markCharged(id, charged, decisionId, this.#p.clock.now());
        }
        if (charged > 0 && alerts.on) {
          try {
            after = this.#p.limits.usage(call.sessionKey, call.at, call.judge);
          } catch {
            // Never fail a settlement over its alert check: `check` reads again.
          }
        }
      });
    try {
      write();
    } catch (e) {
      // The spend happened: keep it, and write it once the ledger answers again.
      this.#ledger.failed(e, "settlement");
      this.#unsettled.push(write);
    }
    if (moot) return { micros: 0, usage: null, moot: true };
    if (failed) this.failed++;
    else this.judged++;
    this.chargedMicros += charged;
    if (charged > 0) alerts.check(call.sessionKey, call.judge, call.at, after);
    this.#p.settled();
    return { micros: charged, usage: c.usage };
  }

  /** Writes the settlements the ledger refused, in order, until it refuses again. */
  retry(): void {
    while (this.#unsettled.length > 0) {
      try {
        this.#unsettled[0]!();
        this.#unsettled.shift();
      } catch {
        return;
      }
    }
  }

  /**
   * Learned sizes are written on the heartbeat and at close, not in every settlement: they
   * only shape estimates, and a lost few seconds of learning costs nothing, while one more
   * page in each settlement's commit costs every call.
   */
  saveLearned(): void {
    if (this.#learned.size === 0) return;
    const rows = [...this.#learned.values()];
    this.#learned.clear();
    this.#ledger.attempt((s) =>
      s.atomically(() => {
        for (const r of rows) s.saveEstimateStats(r);
      }),
    );
  }

  /**
   * A judge that reports no usage is learned from its estimate, so its estimate settles; without
   * tokens, a reported cost still teaches: the expected usage scaled to it, so that a judge that
   * costs far more than its estimate (an agent's many turns) is reserved for so.
   */
  #learn(call: PendingCall, c: Charge): void {
    const { expected, expectedMicros } = call.estimate;
    const from =
      c.usage ??
      (expected !== null && c.source === "reported" && expectedMicros > 0
        ? scaleUsage(expected, c.micros / expectedMicros)
        : expected);
    if (from === null) return;
    const learned = this.#p.estimator.learn(call.judge, call.model, call.transcriptChars, from);
    this.#learned.set(`${learned.judge}\u0000${learned.model}`, learned);
  }
}
