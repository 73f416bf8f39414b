import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import pLimit, { type LimitFunction } from "p-limit";
import { admit, type BudgetCaps, type Refusal } from "../budget/admission.js";
import { CostEstimator, type Estimate, type EstimateStats } from "../budget/estimator.js";
import { CannedCatalog } from "../detection/catalog.js";
import { type Observation, SessionTracker } from "../detection/tracker.js";
import {
  GlobalBudgetError,
  GuardClosedError,
  type JudgeSkippedError,
  LedgerUnavailableError,
  SessionBudgetError,
  SessionCallsError,
  type SkipCode,
  type SkipDetails,
  StuckSessionError,
} from "../errors.js";
import { createLogger, LOG_LEVELS, type Logger } from "../log/logger.js";
import { PriceTable, type Usage } from "../pricing/prices.js";
import { type ReportedCost, readUsage } from "../pricing/usage.js";
import type { GuardEvent } from "../signals/types.js";
import { MemoryStore } from "../store/memory.js";
import { currentOwner, isOwnerDead } from "../store/owners.js";
import { SqliteStore } from "../store/sqlite.js";
import type { DecisionRecord, KeyStateRecord, LedgerStore, OwnerRecord, SkipReason } from "../store/types.js";
import { DAY_MS, DEFAULTS, type GuardOptions, type ResolvedOptions, resolveOptions } from "./options.js";
import type { CallOptions, Outcome, RunOptions, SkippedOutcome } from "./outcome.js";
import { type JudgeRequest, type NormalizedRequest, normalizeRequest } from "./request.js";

/** Read-only counters since the guard was created. */
export interface GuardStats {
  judged: number;
  failed: number;
  reused: number;
  skipped: Record<Exclude<SkipReason, "duplicate">, number>;
  chargedUsd: number;
  savedUsd: number;
  stuckEpisodes: number;
  signalsDelivered: number;
  signalsFailed: number;
  ledgerErrors: number;
  reclaimedReservations: number;
}

/** What {@link Guard.session} reports about one key. */
export interface SessionState {
  readonly sessionKey: string;
  readonly stuck: boolean;
  readonly episodeId: string | null;
  readonly fingerprint: string | null;
  readonly repeats: number;
  readonly spentUsd: number;
  readonly calls: number;
  readonly budgetUsd: number;
  readonly maxCalls: number;
}

interface Verdict {
  readonly value: unknown;
  readonly chargedMicros: number;
}

interface StuckVerdict {
  readonly stuck: boolean;
  readonly episodeId: string | null;
  readonly fingerprint: string | null;
  readonly repeats: number;
}

const CODES: Record<Exclude<SkipReason, "duplicate">, SkipCode> = {
  stuck_session: "STUCK_SESSION",
  session_budget: "SESSION_BUDGET",
  session_calls: "SESSION_CALLS",
  global_budget: "GLOBAL_BUDGET",
  ledger_error: "LEDGER_UNAVAILABLE",
};

const HEARTBEAT_MS = 5_000;
const ADMISSION_POLL_MS = 50;

/** A call waiting for admission near a cap. */
interface Waiter {
  readonly req: NormalizedRequest;
  readonly obs: Observation;
  readonly savedMicros: number;
  readonly shadowReason: SkipReason | null;
  readonly knownUsage: Usage | undefined;
  readonly reservationId: string;
  readonly deadline: number;
  resolve: (r: Admitted | SkippedOutcome) => void;
  /** The scope that refused it last: a session key, or null for the global budget. */
  blockedBy?: string | null;
}

/** A call admitted by the budgets, on its way to the judge. */
interface Admitted {
  readonly req: NormalizedRequest;
  readonly obs: Observation;
  readonly estimate: Estimate;
  /** Guard-clock time of admission; the charge lands in this time's bucket. */
  readonly at: number;
  readonly reservationId: string;
  /** False when the ledger failed and the call runs unguarded (onError "open"). */
  readonly reserved: boolean;
  readonly shadowReason: SkipReason | null;
  readonly knownUsage: Usage | undefined;
}
const micros = (usd: number): number => Math.round(usd * 1_000_000);
const usd = (m: number): number => m / 1_000_000;

/**
 * The guard in front of every judge call. One verb, {@link Guard.run}: it fingerprints the
 * session's new replies, short-circuits stuck sessions and exhausted budgets, reuses verdicts
 * of identical requests, reserves an estimate, calls the judge within the concurrency limit,
 * settles the actual cost, and records every decision in the ledger.
 */
export class Guard {
  readonly #o: ResolvedOptions;
  readonly #store: LedgerStore;
  readonly #ownsStore: boolean;
  readonly #log: Logger;
  readonly #prices: PriceTable;
  readonly #estimator: CostEstimator;
  readonly #catalog: CannedCatalog;
  readonly #tracker: SessionTracker;
  readonly #limit: LimitFunction;
  readonly #verdicts: LRUCache<string, Verdict>;
  readonly #inflight = new Map<string, Promise<Outcome<unknown>>>();
  readonly #keyStates: LRUCache<string, KeyStateRecord>;
  readonly #pending = new Set<Promise<unknown>>();
  /** Admissions waiting for calls in flight to settle, in arrival order. */
  #queue: Waiter[] = [];
  #pumpTimer: NodeJS.Timeout | undefined;
  /** Estimator rows learned since they were last written to the ledger. */
  readonly #learned = new Map<string, EstimateStats>();
  /** Channels that delivered each episode's signal, while some have not. */
  readonly #delivered = new Map<string, Set<string>>();
  readonly #caps: BudgetCaps;
  readonly #owner: OwnerRecord;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #stats: GuardStats = {
    judged: 0,
    failed: 0,
    reused: 0,
    skipped: { stuck_session: 0, session_budget: 0, session_calls: 0, global_budget: 0, ledger_error: 0 },
    chargedUsd: 0,
    savedUsd: 0,
    stuckEpisodes: 0,
    signalsDelivered: 0,
    signalsFailed: 0,
    ledgerErrors: 0,
    reclaimedReservations: 0,
  };
  #closed = false;

  constructor(options: GuardOptions = {}) {
    this.#o = resolveOptions(options);
    const logger = options.logger ?? "warn";
    if (typeof logger === "string" && !(LOG_LEVELS as readonly string[]).includes(logger)) {
      throw new TypeError(
        `option logger must be a pino logger or one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(logger)}`,
      );
    }
    this.#log = typeof logger === "string" ? createLogger(logger) : logger;
    const ledger = options.ledger ?? DEFAULTS.ledger;
    if (typeof ledger === "string") {
      this.#store = ledger === ":memory:" ? new MemoryStore() : new SqliteStore(ledger);
      this.#ownsStore = true;
    } else {
      this.#store = ledger;
      this.#ownsStore = false;
    }
    this.#prices = new PriceTable(this.#o.prices, (model) =>
      this.#log.warn({ model }, "no price for this model: charging it at the highest known rate"),
    );
    this.#usageOf = options.usageOf ?? readUsage;
    this.#usageOfError = options.usageOfError ?? readUsage;
    this.#caps = {
      sessionBudgetMicros: this.#o.sessionBudgetMicros,
      sessionMaxCalls: this.#o.sessionMaxCalls,
      globalBudgetMicros: this.#o.dailyBudgetMicros,
    };
    this.#limit = pLimit(this.#o.concurrency);
    this.#verdicts = new LRUCache({
      max: this.#o.verdictCacheSize,
      ttl: this.#o.verdictTtlMs || 1,
      ttlAutopurge: false,
    });
    this.#keyStates = new LRUCache({ max: this.#o.maxSessions });
    this.#owner = currentOwner(Date.now());

    try {
      this.#estimator = new CostEstimator(this.#prices, this.#o.estimator, this.#store.estimateStats());
      this.#catalog = new CannedCatalog(this.#o.cannedPatterns, this.#store.cannedFingerprints());
      this.#store.registerOwner(this.#owner);
      this.#reclaim();
    } catch (e) {
      if (this.#ownsStore) this.#store.close();
      throw e;
    }
    this.#tracker = new SessionTracker(
      {
        repeatThreshold: this.#o.repeatThreshold,
        knownRepeatThreshold: this.#o.knownRepeatThreshold,
        minReplyChars: this.#o.minReplyChars,
        similarity: this.#o.similarity,
        maxSessions: this.#o.maxSessions,
      },
      this.#catalog,
    );
    if (!(this.#store instanceof MemoryStore)) {
      this.#timer = setInterval(() => this.#tick(), HEARTBEAT_MS);
      this.#timer.unref();
    }
  }

  readonly #usageOf: (result: unknown) => ReportedCost | undefined;
  readonly #usageOfError: (error: unknown) => ReportedCost | undefined;

  /** The ledger behind this guard. */
  get store(): LedgerStore {
    return this.#store;
  }

  /** Counters since creation (a snapshot). */
  get stats(): GuardStats {
    return structuredClone(this.#stats);
  }

  /**
   * Guards one judge call. Resolves with the judge's value and the cost charged, a reused
   * verdict, or a skip (the judge was not called). Rejects only with the judge's own error
   * (after charging any partial cost it reports) or an `InvalidRequestError`.
   */
  async run<T>(
    request: JudgeRequest,
    judge: () => Promise<T> | T,
    options: RunOptions<T> = {},
  ): Promise<Outcome<T>> {
    if (this.#closed) throw new GuardClosedError();
    const req = normalizeRequest(request);
    const now = this.#o.clock.now();
    const obs = this.#tracker.observe(req.sessionKey, req.userMessages, req.assistantMessages, req.facts);
    const stuck = this.#updateStuckState(req, obs, now);
    const estimate = this.#estimator.estimate(req.judge, req.model, obs.transcriptChars, req.maxTokens);
    const savedMicros = options.knownUsage
      ? this.#prices.costMicros(req.model, options.knownUsage)
      : estimate.expectedMicros;
    const shadow = this.#o.mode === "shadow";

    let shadowReason: SkipReason | null = null;
    if (stuck.stuck) {
      if (!shadow) return this.#skip(req, obs, now, "stuck_session", savedMicros, { stuck });
      shadowReason = "stuck_session";
    }

    const cacheKey = `${req.sessionKey}\u0000${req.judge}\u0000${req.model}\u0000${req.variant}\u0000${obs.transcriptHash}`;
    const reusable = this.#o.verdictTtlMs > 0 && !shadow;
    if (reusable) {
      let known = this.#verdicts.get(cacheKey);
      const shared = known === undefined ? this.#inflight.get(cacheKey) : undefined;
      if (shared !== undefined) {
        // An identical call is in flight: share its verdict rather than pay twice.
        const o = await shared.catch(() => undefined);
        if (o?.status === "judged") known = { value: o.value, chargedMicros: micros(o.costUsd) };
      }
      if (known !== undefined) {
        this.#recordSkip(req, obs, now, "duplicate", known.chargedMicros, null);
        this.#stats.reused++;
        this.#stats.savedUsd += usd(known.chargedMicros);
        return { status: "reused", value: known.value as T, savedUsd: usd(known.chargedMicros) };
      }
    }

    const work = this.#judgeOnce(req, obs, estimate, savedMicros, judge, options, shadowReason);
    if (reusable) this.#inflight.set(cacheKey, work);
    this.#track(work);
    try {
      const outcome = await work;
      if (reusable && outcome.status === "judged") {
        this.#verdicts.set(cacheKey, { value: outcome.value, chargedMicros: micros(outcome.costUsd) });
      }
      return outcome;
    } finally {
      if (reusable) this.#inflight.delete(cacheKey);
    }
  }

  /**
   * Like {@link run}, but resolves with the judge's value: a skip throws its typed error, or,
   * with `substitute`, resolves with the substitute's value instead.
   */
  async call<T>(
    request: JudgeRequest,
    judge: () => Promise<T> | T,
    options: CallOptions<T> = {},
  ): Promise<T> {
    const outcome = await this.run(request, judge, options);
    if (outcome.status !== "skipped") return outcome.value;
    if (options.substitute) return options.substitute(outcome);
    throw outcome.error;
  }

  /** A key's current state: stuck or not, and its spend against its caps within the window. */
  session(sessionKey: string): SessionState {
    const now = this.#o.clock.now();
    const ks = this.#keyState(sessionKey);
    const u = this.#store.scopeUsage(sessionKey, now - this.#o.budgetWindowMs);
    return {
      sessionKey,
      stuck: ks?.stuck ?? false,
      episodeId: ks?.episodeId ?? null,
      fingerprint: ks?.fingerprint ?? null,
      repeats: ks?.repeats ?? 0,
      spentUsd: usd(u.spentMicros),
      calls: u.calls,
      budgetUsd: usd(this.#o.sessionBudgetMicros),
      maxCalls: this.#o.sessionMaxCalls,
    };
  }

  /** Operator action: clears a key's stuck state; its next transcript is analysed afresh. */
  resetSession(sessionKey: string): void {
    const now = this.#o.clock.now();
    const ks = this.#keyState(sessionKey);
    if (ks?.stuck && ks.episodeId) this.#ledger(() => this.#store.closeEpisode(ks.episodeId!, now));
    const cleared = clearedState(sessionKey, now);
    this.#keyStates.set(sessionKey, cleared);
    this.#ledger(() => this.#store.saveKeyState(cleared));
    this.#tracker.forget(sessionKey);
  }

  /** Waits for judge calls and signal deliveries in flight, then releases the ledger. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    this.#saveLearned();
    this.#ledger(() => this.#store.removeOwner(this.#owner.id));
    if (this.#ownsStore) this.#store.close();
  }

  // ---------------------------------------------------------------------------------------

  /** Admission, then the call within the concurrency limit, then settlement. */
  async #judgeOnce<T>(
    req: NormalizedRequest,
    obs: Observation,
    estimate: Estimate,
    savedMicros: number,
    judge: () => Promise<T> | T,
    options: RunOptions<T>,
    shadowReason: SkipReason | null,
  ): Promise<Outcome<T>> {
    const admitted = await this.#admit(req, obs, estimate, savedMicros, shadowReason, options.knownUsage);
    if ("status" in admitted) return admitted;
    return this.#limit(() => this.#call(admitted, judge, options));
  }

  /**
   * Reserves the call's expected cost atomically, or refuses it. A refusal only because other
   * calls in flight could overspend together is not final: the guard waits for a settlement
   * (here, or seen through the ledger from another process) and asks again, up to
   * `admissionWaitMs`.
   */
  async #admit(
    req: NormalizedRequest,
    obs: Observation,
    estimate: Estimate,
    savedMicros: number,
    shadowReason: SkipReason | null,
    knownUsage: Usage | undefined,
  ): Promise<Admitted | SkippedOutcome> {
    const w: Waiter = {
      req,
      obs,
      savedMicros,
      shadowReason,
      knownUsage,
      reservationId: randomUUID(),
      deadline: Date.now() + this.#o.admissionWaitMs,
      resolve: () => {},
    };
    const first = this.#tryAdmit(w, estimate);
    if (first !== "wait") return first;
    return new Promise((resolve) => {
      w.resolve = resolve;
      this.#queue.push(w);
      this.#schedulePump(ADMISSION_POLL_MS);
    });
  }

  /**
   * One admission attempt in one write transaction: an admitted call, a final skip, or "wait"
   * when only calls in flight stand in the way (and there is time left to wait).
   */
  #tryAdmit(w: Waiter, estimate: Estimate): Admitted | SkippedOutcome | "wait" {
    const { req } = w;
    const shadow = this.#o.mode === "shadow";
    const now = this.#o.clock.now();
    const admitted = (reserved: boolean, shadowReason: SkipReason | null): Admitted => ({
      req,
      obs: w.obs,
      estimate,
      at: now,
      reservationId: w.reservationId,
      reserved,
      shadowReason,
      knownUsage: w.knownUsage,
    });
    let refusal: Refusal | null;
    try {
      refusal = this.#store.atomically(() => {
        const snapshot = {
          session: this.#store.scopeUsage(req.sessionKey, now - this.#o.budgetWindowMs),
          global: this.#store.scopeUsage(null, now - DAY_MS),
        };
        const r = admit(snapshot, estimate, this.#caps);
        if (r !== null && !shadow) return r;
        this.#store.openReservation({
          id: w.reservationId,
          ownerId: this.#owner.id,
          sessionKey: req.sessionKey,
          judge: req.judge,
          model: req.model,
          expectedMicros: estimate.expectedMicros,
          worstMicros: estimate.worstMicros,
          createdMs: now,
        });
        return r;
      });
    } catch (e) {
      this.#ledgerFailed(e, "admission");
      if (this.#o.onError === "closed")
        return this.#skip(req, w.obs, now, "ledger_error", w.savedMicros, { cause: e });
      return admitted(false, w.shadowReason);
    }
    if (refusal === null) return admitted(true, w.shadowReason);
    if (shadow) return admitted(true, w.shadowReason ?? refusal.reason);
    if (refusal.concurrency && Date.now() < w.deadline) {
      w.blockedBy = refusal.reason === "global_budget" ? null : req.sessionKey;
      return "wait";
    }
    return this.#skip(req, w.obs, now, refusal.reason, w.savedMicros, { refusal });
  }

  #schedulePump(ms: number): void {
    if (this.#pumpTimer !== undefined || this.#queue.length === 0) return;
    this.#pumpTimer = setTimeout(() => {
      this.#pumpTimer = undefined;
      this.#pump();
    }, ms);
  }

  /**
   * Retries waiting admissions in arrival order, after a settlement here or on the poll timer
   * (a settlement in another process shows only in the ledger). Each round stops trying a scope
   * at its first refusal, so a round costs at most one transaction per waiting key, not one per
   * waiting call.
   */
  #pump(): void {
    const blockedKeys = new Set<string>();
    let globalBlocked = false;
    const still: Waiter[] = [];
    for (const w of this.#queue) {
      const scopeBlocked = globalBlocked || blockedKeys.has(w.req.sessionKey);
      if (scopeBlocked && Date.now() < w.deadline) {
        still.push(w);
        continue;
      }
      // A settlement meanwhile may have taught the estimator this judge's worst case.
      const estimate = this.#estimator.estimate(
        w.req.judge,
        w.req.model,
        w.obs.transcriptChars,
        w.req.maxTokens,
      );
      const r = this.#tryAdmit(w, estimate);
      if (r !== "wait") {
        w.resolve(r);
        continue;
      }
      still.push(w);
      if (w.blockedBy === null) globalBlocked = true;
      else if (w.blockedBy !== undefined) blockedKeys.add(w.blockedBy);
    }
    this.#queue = still;
    this.#schedulePump(ADMISSION_POLL_MS);
  }

  async #call<T>(a: Admitted, judge: () => Promise<T> | T, options: RunOptions<T>): Promise<Outcome<T>> {
    const started = performance.now();
    let value: T;
    try {
      value = await judge();
    } catch (error) {
      this.#settle(a, "failed", this.#usageOfError(error), started);
      throw error;
    }
    const usageOf =
      (options.usageOf as ((r: unknown) => ReportedCost | undefined) | undefined) ?? this.#usageOf;
    const charged = this.#settle(a, "judged", usageOf(value), started);
    return {
      status: "judged",
      value,
      costUsd: usd(charged.micros),
      usage: charged.usage,
      reservedUsd: usd(a.estimate.expectedMicros),
      shadowReason: a.shadowReason,
    };
  }

  /** Settles to the actual cost: releases the reservation, charges the budgets, records the decision. */
  #settle(
    a: Admitted,
    decision: "judged" | "failed",
    reported: ReportedCost | undefined,
    started: number,
  ): { micros: number; usage: Usage | null } {
    const { req, obs, estimate } = a;
    const failed = decision === "failed";
    const usage = reported?.usage ?? (failed ? null : (a.knownUsage ?? null));
    let charged: number;
    if (usage) charged = this.#prices.costMicros(req.model, usage);
    else if (reported?.costUsd !== undefined) charged = micros(reported.costUsd);
    else if (failed) charged = 0;
    else {
      // The judge reported nothing: charge the estimate rather than pretend it was free.
      charged = estimate.expectedMicros;
      this.#log.debug(
        { judge: req.judge, model: req.model },
        "judge result has no usage: charged the estimate",
      );
    }
    const record: DecisionRecord = {
      ts: a.at,
      sessionKey: req.sessionKey,
      judge: req.judge,
      model: req.model,
      decision,
      reason: a.shadowReason,
      shadow: a.shadowReason !== null,
      reservedMicros: a.reserved ? estimate.expectedMicros : 0,
      chargedMicros: charged,
      savedMicros: 0,
      inputTokens: usage?.inputTokens ?? 0,
      outputTokens: usage?.outputTokens ?? 0,
      cacheReadTokens: usage?.cacheReadTokens ?? 0,
      cacheWriteTokens: (usage?.cacheWriteTokens ?? 0) + (usage?.cacheWrite1hTokens ?? 0),
      turns: obs.turns,
      transcriptChars: obs.transcriptChars,
      transcriptHash: obs.transcriptHash,
      durationMs: Math.round(performance.now() - started),
      episodeId: null,
    };
    // A judge that reports no usage is learned from its estimate, so its worst case becomes known.
    if (!failed) {
      const learned = this.#estimator.learn(
        req.judge,
        req.model,
        obs.transcriptChars,
        usage ?? estimate.expected,
      );
      this.#learned.set(`${learned.judge}\u0000${learned.model}`, learned);
    }
    this.#ledger(() =>
      this.#store.atomically(() => {
        if (a.reserved) this.#store.deleteReservation(a.reservationId);
        if (charged > 0 || !failed) this.#store.addUsage(req.sessionKey, a.at, charged, 1);
        this.#store.recordDecision(record);
      }),
    );
    if (failed) this.#stats.failed++;
    else this.#stats.judged++;
    this.#stats.chargedUsd += usd(charged);
    if (this.#queue.length > 0) {
      clearTimeout(this.#pumpTimer);
      this.#pumpTimer = undefined;
      this.#schedulePump(0);
    }
    return { micros: charged, usage };
  }

  #skip(
    req: NormalizedRequest,
    obs: Observation,
    now: number,
    reason: Exclude<SkipReason, "duplicate">,
    savedMicros: number,
    why: { stuck?: StuckVerdict; refusal?: Refusal; cause?: unknown },
  ): SkippedOutcome {
    const details: SkipDetails = {
      sessionKey: req.sessionKey,
      judge: req.judge,
      model: req.model,
      savedUsd: usd(savedMicros),
      ...(why.stuck
        ? {
            fingerprint: why.stuck.fingerprint ?? undefined,
            repeats: why.stuck.repeats,
            episodeId: why.stuck.episodeId ?? undefined,
          }
        : {}),
      ...(why.refusal
        ? {
            used: why.refusal.reason === "session_calls" ? why.refusal.used : usd(why.refusal.used),
            cap: why.refusal.reason === "session_calls" ? why.refusal.cap : usd(why.refusal.cap),
          }
        : {}),
    };
    let error: JudgeSkippedError;
    switch (reason) {
      case "stuck_session":
        error = new StuckSessionError(details);
        break;
      case "session_budget":
        error = new SessionBudgetError(details);
        break;
      case "session_calls":
        error = new SessionCallsError(details);
        break;
      case "global_budget":
        error = new GlobalBudgetError(details);
        break;
      case "ledger_error":
        error = new LedgerUnavailableError(details, why.cause);
        break;
    }
    if (reason !== "ledger_error")
      this.#recordSkip(req, obs, now, reason, savedMicros, why.stuck?.episodeId ?? null);
    this.#stats.skipped[reason]++;
    this.#stats.savedUsd += usd(savedMicros);
    return { status: "skipped", reason, code: CODES[reason], error, savedUsd: usd(savedMicros) };
  }

  #recordSkip(
    req: NormalizedRequest,
    obs: Observation,
    now: number,
    reason: SkipReason,
    savedMicros: number,
    episodeId: string | null,
  ): void {
    this.#ledger(() =>
      this.#store.recordDecision({
        ts: now,
        sessionKey: req.sessionKey,
        judge: req.judge,
        model: req.model,
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
        turns: obs.turns,
        transcriptChars: obs.transcriptChars,
        transcriptHash: obs.transcriptHash,
        durationMs: 0,
        episodeId,
      }),
    );
  }

  /**
   * Turns the tracker's assessment into episodes: opens one when a key becomes stuck (and
   * registers its canned fingerprint for every session), signals the runtime once per
   * episode and again only after the cooldown, and closes it when a different reply arrives.
   */
  #updateStuckState(req: NormalizedRequest, obs: Observation, now: number): StuckVerdict {
    const run = obs.run;
    const stuckNow = obs.assessment?.stuck === true && run !== null;
    const ks = this.#keyState(req.sessionKey);
    if (!stuckNow) {
      if (ks?.stuck) {
        this.#log.info(
          { sessionKey: req.sessionKey, episodeId: ks.episodeId },
          "session recovered: judging resumes",
        );
        const cleared = clearedState(req.sessionKey, now);
        this.#keyStates.set(req.sessionKey, cleared);
        this.#ledger(() =>
          this.#store.atomically(() => {
            if (ks.episodeId) this.#store.closeEpisode(ks.episodeId, now);
            this.#store.saveKeyState(cleared);
          }),
        );
      }
      return { stuck: false, episodeId: null, fingerprint: null, repeats: 0 };
    }

    let next: KeyStateRecord;
    if (ks?.stuck && ks.fingerprint === run.fingerprint && ks.episodeId) {
      if (ks.repeats === run.length && !this.#signalDue(ks, now)) {
        return { stuck: true, episodeId: ks.episodeId, fingerprint: ks.fingerprint, repeats: ks.repeats };
      }
      next = { ...ks, repeats: run.length, updatedMs: now };
    } else {
      const episodeId = randomUUID();
      next = {
        sessionKey: req.sessionKey,
        stuck: true,
        episodeId,
        fingerprint: run.fingerprint,
        repeats: run.length,
        lastSignalMs: null,
        signalled: false,
        updatedMs: now,
      };
      this.#stats.stuckEpisodes++;
      this.#catalog.addFingerprint(run.fingerprint);
      this.#log.info(
        {
          sessionKey: req.sessionKey,
          episodeId,
          fingerprint: run.fingerprint,
          repeats: run.length,
          evidence: obs.assessment?.evidence,
        },
        "session is stuck: judging stops until it recovers",
      );
      this.#ledger(() =>
        this.#store.atomically(() => {
          if (ks?.stuck && ks.episodeId) this.#store.closeEpisode(ks.episodeId, now);
          this.#store.openEpisode({
            id: episodeId,
            sessionKey: req.sessionKey,
            fingerprint: run.fingerprint,
            evidence: obs.assessment!.evidence,
            repeats: run.length,
            detectedTurn: obs.turns,
            startedMs: now,
          });
          this.#store.addCannedFingerprint(run.fingerprint, "episode", now);
        }),
      );
    }
    if (this.#signalDue(next, now)) {
      next = { ...next, lastSignalMs: now };
      this.#signal(
        {
          type: "stuck_session",
          session_key: req.sessionKey,
          reason: "stuck_session",
          fingerprint: run.fingerprint,
          repeats: run.length,
          episode_id: next.episodeId!,
          ts: new Date(now).toISOString(),
        },
        now,
      );
    }
    this.#keyStates.set(req.sessionKey, next);
    this.#ledger(() => this.#store.saveKeyState(next));
    return { stuck: true, episodeId: next.episodeId, fingerprint: next.fingerprint, repeats: next.repeats };
  }

  /**
   * One signal per episode: once every channel has delivered it, it is not sent again (if the
   * runtime acts on it the next reply differs and the episode ends; if not, an operator must
   * look). A channel that failed is retried, at most once per cooldown.
   */
  #signalDue(ks: KeyStateRecord, now: number): boolean {
    if (this.#o.signals.length === 0 || ks.signalled) return false;
    return ks.lastSignalMs === null || now - ks.lastSignalMs >= this.#o.signalCooldownMs;
  }

  #signal(event: GuardEvent, now: number): void {
    let delivered = this.#delivered.get(event.episode_id);
    if (delivered === undefined) {
      delivered = new Set();
      this.#delivered.set(event.episode_id, delivered);
    }
    const sinks = this.#o.signals.filter((s) => !delivered.has(s.name));
    const deliveries = sinks.map(async (sink) => {
      let error: string | null = null;
      try {
        await sink.send(event);
        delivered.add(sink.name);
        this.#stats.signalsDelivered++;
      } catch (e) {
        error = (e as Error)?.message ?? String(e);
        this.#stats.signalsFailed++;
        this.#log.warn(
          { channel: sink.name, sessionKey: event.session_key, err: error },
          "signal delivery failed",
        );
      }
      this.#ledger(() =>
        this.#store.recordSignal({
          ts: now,
          episodeId: event.episode_id,
          sessionKey: event.session_key,
          channel: sink.name,
          event: event.type,
          status: error === null ? "delivered" : "failed",
          attempts: 1,
          error,
        }),
      );
    });
    this.#track(
      Promise.allSettled(deliveries).then(() => {
        if (delivered.size < this.#o.signals.length) return;
        this.#delivered.delete(event.episode_id);
        const ks = this.#keyStates.get(event.session_key);
        if (ks?.episodeId !== event.episode_id) return;
        const done = { ...ks, signalled: true };
        this.#keyStates.set(event.session_key, done);
        this.#ledger(() => this.#store.saveKeyState(done));
      }),
    );
  }

  #keyState(sessionKey: string): KeyStateRecord | undefined {
    let ks = this.#keyStates.get(sessionKey);
    if (ks === undefined) {
      ks = this.#ledger(() => this.#store.keyState(sessionKey));
      if (ks !== undefined) this.#keyStates.set(sessionKey, ks);
    }
    return ks;
  }

  #track(p: Promise<unknown>): void {
    this.#pending.add(p);
    const done = () => this.#pending.delete(p);
    p.then(done, done);
  }

  /** Runs a ledger write that must not break the caller: failures are logged and counted. */
  #ledger<R>(fn: () => R): R | undefined {
    try {
      return fn();
    } catch (e) {
      this.#ledgerFailed(e, "write");
      return undefined;
    }
  }

  #ledgerFailed(e: unknown, during: string): void {
    this.#stats.ledgerErrors++;
    this.#log.error(
      { during, err: (e as Error)?.message ?? String(e), ledger: this.#store.location },
      "ledger failure",
    );
  }

  #reclaim(): void {
    const now = Date.now();
    const dead = this.#store
      .owners()
      .filter((o) => isOwnerDead(o, this.#owner, now, this.#o.leaseMs))
      .map((o) => o.id);
    const n = this.#store.reclaimReservations(dead);
    if (n > 0) {
      this.#stats.reclaimedReservations += n;
      this.#log.warn(
        { reservations: n, owners: dead.length },
        "reclaimed reservations left by guards that are gone",
      );
    }
  }

  #tick(): void {
    this.#ledger(() => {
      this.#store.heartbeat(this.#owner.id, Date.now());
      this.#reclaim();
      this.#store.pruneUsage(this.#o.clock.now() - Math.max(this.#o.budgetWindowMs, DAY_MS) * 2);
    });
    this.#saveLearned();
  }

  /**
   * Learned sizes are written on the heartbeat and at close, not in every settlement: they
   * only shape estimates, and a lost few seconds of learning costs nothing, while one more
   * page in each settlement's commit costs every call.
   */
  #saveLearned(): void {
    if (this.#learned.size === 0) return;
    const rows = [...this.#learned.values()];
    this.#learned.clear();
    this.#ledger(() =>
      this.#store.atomically(() => {
        for (const r of rows) this.#store.saveEstimateStats(r);
      }),
    );
  }
}

function clearedState(sessionKey: string, now: number): KeyStateRecord {
  return {
    sessionKey,
    stuck: false,
    episodeId: null,
    fingerprint: null,
    repeats: 0,
    lastSignalMs: null,
    signalled: false,
    updatedMs: now,
  };
}

/** Creates a guard. See {@link GuardOptions}; `fromEnv()` builds the options from the environment. */
export function createGuard(options: GuardOptions = {}): Guard {
  return new Guard(options);
}
