import { LRUCache } from "lru-cache";
import type { Refusal } from "../budget/admission.js";
import type { BudgetAlerts } from "../budget/alerts.js";
import type { CallSubject } from "../budget/pending.js";
import type { SkipReason } from "../domain/decision.js";
import { type SkipDetails, skipError } from "../errors.js";
import type { SafeLedger } from "../store/safe.js";
import type { BudgetLedger } from "../store/types.js";
import { toUsd } from "../util/money.js";
import type { StuckVerdict } from "./episodes.js";
import { SKIP_CODES, type SkippedOutcome } from "./outcome.js";

/** A call the guard may not make: what its decision record names, and its identity. */
export interface WouldBeCall extends CallSubject {
  /** Key, judge kind, model, variant and transcript: identical calls share it. */
  readonly identity: string;
}

/** Why a call was skipped: the stuck verdict, the budget's refusal, or the ledger's failure. */
export interface SkipWhy {
  readonly stuck?: StuckVerdict;
  readonly refusal?: Refusal;
  readonly cause?: unknown;
}

/** Identities whose skip has been counted as saved, per guard. */
const SAVED_IDENTITIES = 10_000;

/**
 * The calls the guard decides not to make: each skip is recorded in the ledger with what it
 * saved, counted, and answered with a typed outcome; a reused verdict is recorded as a
 * `duplicate`.
 */
export class Skips {
  readonly skipped: Record<SkippedOutcome["reason"], number> = {
    stuck_session: 0,
    session_budget: 0,
    session_calls: 0,
    judge_budget: 0,
    global_budget: 0,
    ledger_error: 0,
  };
  reused = 0;
  savedMicros = 0;
  readonly #ledger: SafeLedger<BudgetLedger>;
  readonly #alerts: BudgetAlerts;
  /**
   * Would-be calls already counted as saved: a retry of a skipped call (Phantom's fallbacks
   * call the judge again after a skip) would not have been made unguarded, so it saves nothing.
   */
  readonly #savedOnce = new LRUCache<string, true>({ max: SAVED_IDENTITIES });

  constructor(ledger: SafeLedger<BudgetLedger>, alerts: BudgetAlerts) {
    this.#ledger = ledger;
    this.#alerts = alerts;
  }

  skip(
    call: WouldBeCall,
    now: number,
    reason: SkippedOutcome["reason"],
    savedMicros: number,
    why: SkipWhy,
  ): SkippedOutcome {
    // A would-be call counts once: a repeat of a skipped identity is recorded but saves nothing.
    if (this.#savedOnce.has(call.identity)) savedMicros = 0;
    else this.#savedOnce.set(call.identity, true);
    const inCalls = why.refusal?.reason === "session_calls";
    const details: SkipDetails = {
      sessionKey: call.sessionKey,
      judge: call.judge,
      model: call.model,
      savedUsd: toUsd(savedMicros),
      ...(why.stuck && {
        fingerprint: why.stuck.fingerprint ?? undefined,
        repeats: why.stuck.repeats,
        episodeId: why.stuck.episodeId ?? undefined,
      }),
      ...(why.refusal && {
        used: inCalls ? why.refusal.used : toUsd(why.refusal.used),
        cap: inCalls ? why.refusal.cap : toUsd(why.refusal.cap),
        ...(why.refusal.concurrency && { concurrency: true }),
      }),
    };
    const code = SKIP_CODES[reason];
    if (why.refusal) this.#alerts.refused(why.refusal, call, now);
    if (reason !== "ledger_error") this.#record(call, now, reason, savedMicros, why.stuck?.episodeId ?? null);
    this.skipped[reason]++;
    this.savedMicros += savedMicros;
    return {
      status: "skipped",
      reason,
      code,
      error: skipError(code, details, why.cause),
      savedUsd: toUsd(savedMicros),
    };
  }

  /** An identical call's verdict was reused: it saved what that call was charged. */
  reuse(call: CallSubject, now: number, savedMicros: number): void {
    this.#record(call, now, "duplicate", savedMicros, null);
    this.reused++;
    this.savedMicros += savedMicros;
  }

  #record(
    call: CallSubject,
    now: number,
    reason: SkipReason,
    savedMicros: number,
    episodeId: string | null,
  ): void {
    this.#ledger.attempt((s) =>
      s.recordDecision({
        ts: now,
        sessionKey: call.sessionKey,
        judge: call.judge,
        model: call.model,
        decision: "skipped",
        reason,
        shadow: false,
        reservedMicros: 0,
        chargedMicros: 0,
        savedMicros,
        inputTokens: 0,
        outputTokens: 0,
        cacheReadTokens: 0,
        cacheWriteTokens: 0,
        turns: call.turns,
        transcriptChars: call.transcriptChars,
        transcriptHash: call.transcriptHash,
        durationMs: 0,
        episodeId,
      }),
    );
  }
}
