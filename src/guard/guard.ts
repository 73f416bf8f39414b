import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import pLimit, { type LimitFunction } from "p-limit";
import type { Refusal } from "../budget/admission.js";
import { BudgetAlerts } from "../budget/alerts.js";
import { CostEstimator, type Estimate } from "../budget/estimator.js";
import { BudgetLimits, DAY_MS } from "../budget/limits.js";
import { type PendingCall, pendingCallOfRow } from "../budget/pending.js";
import { AdmissionQueue } from "../budget/queue.js";
import { Settlements } from "../budget/settlement.js";
import { CannedCatalog } from "../detection/catalog.js";
import { EpisodeBook, type StuckVerdict } from "../detection/episodes.js";
import { type Observation, SessionTracker } from "../detection/tracker.js";
import { type EvidenceStep, plainStep } from "../detection/window.js";
import {
  ConfigError,
  GuardClosedError,
  InvalidRequestError,
  isLedgerFaultError,
  type SkipDetails,
  skipError,
} from "../errors.js";
import { createLogger, type Logger } from "../log/logger.js";
import { PriceTable, type Usage } from "../pricing/prices.js";
import { hasUnreadUsage, type ReportedCost, readUsage } from "../pricing/usage.js";
import { SignalDispatcher } from "../signals/dispatcher.js";
import { MemoryStore } from "../store/memory.js";
import { SafeLedger } from "../store/safe.js";
import { SqliteStore } from "../store/sqlite.js";
import type { EstimateStats, LedgerStore, SkipReason } from "../store/types.js";
import { HEARTBEAT_MS, LedgerUpkeep } from "../store/upkeep.js";
import { toMicros, toUsd } from "../util/money.js";
import { DEFAULTS, type GuardOptions, type ResolvedOptions, resolveOptions } from "./options.js";
import {
  type CallOptions,
  type Outcome,
  outcomeValue,
  type RunOptions,
  SKIP_CODES,
  type SkippedOutcome,
} from "./outcome.js";
import {
  checkTranscriptSize,
  type JudgeRequest,
  type NormalizedRequest,
  type NormalizedSession,
  normalizeRequest,
  normalizeSession,
  type SessionRef,
  type TranscriptLimit,
} from "./request.js";

/** Read-only counters since the guard was created. */
export interface GuardStats {
  judged: number;
  failed: number;
  reused: number;
  skipped: Record<Exclude<SkipReason, "duplicate">, number>;
  chargedUsd: number;
  savedUsd: number;
  stuckEpisodes: number;
  /** Session keys stuck right now (as this process has seen them). */
  stuckKeys: number;
  signalsDelivered: number;
  signalsFailed: number;
  ledgerErrors: number;
  reclaimedReservations: number;
  /** Settlements the ledger refused, waiting to be written again. */
  unsettled: number;
}

/** A judge call a cycle would make: its identity, as in a {@link JudgeRequest}. */
export interface AssessedJudge {
  readonly judge: string;
  readonly model: string;
  /** Tells apart calls of one judge kind with different prompts. */
  readonly variant?: string;
  /** The call's output ceiling, for its estimate. */
  readonly maxTokens?: number;
}

export interface AssessOptions {
  /** The judge calls a skip saves (recorded as skipped decisions with their estimates). */
  readonly judges?: ReadonlyArray<AssessedJudge>;
}

/** What {@link Guard.assess} decides. */
export interface Assessment extends StuckVerdict {
  /** Skip the judges: the session is stuck and the guard enforces (not shadow mode). */
  readonly skip: boolean;
}

/** A call admitted by {@link Guard.admit}: make it, then settle it. */
export interface Ticket {
  readonly status: "admitted";
  readonly reservationId: string;
  readonly reservedUsd: number;
  /** In shadow mode, why enforce mode would have skipped this call; otherwise null. */
  readonly shadowReason: SkipReason | null;
}

/** What an admitted call really cost. */
export interface Settlement {
  /** False when the call failed. */
  readonly ok: boolean;
  readonly usage?: Usage;
  /** A cost reported without tokens. */
  readonly costUsd?: number;
  /** The model that really ran, if not the one admitted. */
  readonly model?: string;
  /** The client never settled (it timed out or went away): charge the reservation's estimate. */
  readonly expired?: boolean;
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

type SkipReasonNotDuplicate = Exclude<SkipReason, "duplicate">;

/** A would-be call's identity: key, judge kind, model, variant and transcript. */
const identity = (req: NormalizedRequest, obs: Observation) =>
  `${req.sessionKey}\u0000${req.judge}\u0000${req.model}\u0000${req.variant}\u0000${obs.transcriptHash}`;

/** Identities whose skip has been counted as saved, per guard. */
const SAVED_IDENTITIES = 10_000;

/** A request that passed validation and the stuck check, on its way to admission. */
interface Prepared {
  readonly kind: "prepared";
  readonly req: NormalizedRequest;
  readonly obs: Observation;
  readonly now: number;
  readonly estimate: Estimate;
  readonly savedMicros: number;
  readonly shadowReason: SkipReason | null;
}

interface Verdict {
  readonly value: unknown;
  readonly chargedMicros: number;
}

/** How long a remote reservation waits for its settlement once its owner is gone, by default. */
const REMOTE_TTL_MS = 600_000;

/**
 * The guard in front of every judge call. One verb, {@link Guard.run}: it fingerprints the
 * session's new replies, short-circuits stuck sessions and exhausted budgets, reuses verdicts
 * of identical requests, reserves an estimate, calls the judge within the concurrency limit,
 * settles the actual cost, and records every decision in the ledger.
 */
export class Guard {
  readonly #o: ResolvedOptions;
  readonly #store: LedgerStore;
  /** The store, for writes whose failure is logged and counted rather than thrown. */
  readonly #ledger: SafeLedger;
  readonly #ownsStore: boolean;
  readonly #log: Logger;
  readonly #prices: PriceTable;
  readonly #estimator: CostEstimator;
  readonly #catalog: CannedCatalog;
  readonly #tracker: SessionTracker;
  readonly #episodes: EpisodeBook;
  readonly #signals: SignalDispatcher;
  readonly #limit: LimitFunction;
  readonly #verdicts: LRUCache<string, Verdict>;
  readonly #inflight = new Map<string, Promise<Outcome<unknown>>>();
  /** Calls admitted through `admit`, waiting for `settle`. */
  readonly #tickets = new Map<string, { call: PendingCall; started: number }>();
  readonly #pending = new Set<Promise<unknown>>();
  readonly #admission: AdmissionQueue;
  readonly #settlements: Settlements;
  readonly #limits: BudgetLimits;
  readonly #alerts: BudgetAlerts;
  /**
   * Would-be calls already counted as saved: a retry of a skipped call (Phantom's fallbacks
   * call the judge again after a skip) would not have been made unguarded, so it saves nothing.
   */
  readonly #savedOnce = new LRUCache<string, true>({ max: SAVED_IDENTITIES });
  /** Judge kinds and models whose unreadable usage was warned about. */
  readonly #unreadWarned = new LRUCache<string, true>({ max: 1000 });
  readonly #upkeep: LedgerUpkeep;
  readonly #usageOf: (result: unknown) => ReportedCost | undefined;
  readonly #usageOfError: (error: unknown) => ReportedCost | undefined;
  readonly #stats = {
    reused: 0,
    skipped: {
      stuck_session: 0,
      session_budget: 0,
      session_calls: 0,
      judge_budget: 0,
      global_budget: 0,
      ledger_error: 0,
    },
    savedMicros: 0,
  };
  #closed = false;

  constructor(options: GuardOptions = {}) {
    this.#o = resolveOptions(options);
    const logger = options.logger ?? "warn";
    this.#log = typeof logger === "string" ? createLogger(logger) : logger;
    const ledger = options.ledger ?? DEFAULTS.ledger;
    this.#ownsStore = typeof ledger === "string";
    this.#store =
      typeof ledger !== "string"
        ? ledger
        : ledger === ":memory:"
          ? new MemoryStore()
          : new SqliteStore(ledger, { whenUnavailable: "retry" });
    this.#ledger = new SafeLedger(this.#store, this.#log, { quietMs: HEARTBEAT_MS });
    this.#limits = new BudgetLimits(this.#o, this.#store);
    if (this.#limits.judgeCapped && typeof this.#store.judgeUsage !== "function") {
      if (this.#ownsStore) this.#store.close();
      throw new ConfigError(
        "judgeBudgetUsd",
        "caps per judge kind (judgeBudgetUsd, judgeBudgetsUsd) need a ledger store that reads spend per judge kind (judgeUsage): SqliteStore and MemoryStore do",
      );
    }
    this.#prices = new PriceTable(this.#o.prices, (model) =>
      this.#log.warn({ model }, "no price for this model: charging it at the highest known rate"),
    );
    this.#usageOf = options.usageOf ?? readUsage;
    this.#usageOfError = options.usageOfError ?? readUsage;
    this.#limit = pLimit(this.#o.concurrency);
    // Verdicts age on the guard's clock, so a replay reuses them only within its own hour.
    const clock = this.#o.clock;
    this.#verdicts = new LRUCache({
      max: this.#o.verdictCacheSize,
      ttl: this.#o.verdictTtlMs || 1,
      ttlResolution: 0,
      perf: clock,
    });
    const retainMs = Math.max(this.#o.budgetWindowMs, DAY_MS) * 2;
    this.#upkeep = new LedgerUpkeep(this.#ledger, this.#log, {
      clock,
      leaseMs: this.#o.leaseMs,
      retainMs,
      caps: this.#o,
    });
    let known: { stats: EstimateStats[]; canned: string[] } = { stats: [], canned: [] };
    try {
      known = { stats: this.#store.estimateStats(), canned: this.#store.cannedFingerprints() };
      this.#upkeep.open();
    } catch (e) {
      if (!isLedgerFaultError(e)) {
        if (this.#ownsStore) this.#store.close();
        throw e;
      }
      // A ledger file that cannot be used (read-only, corrupt) does not stop the guard: calls
      // fail as `onError` says, and the heartbeat tries the file again.
      this.#ledger.failed(e, "start-up");
    }
    this.#estimator = new CostEstimator(this.#prices, this.#o.estimator, known.stats);
    this.#catalog = new CannedCatalog(this.#o.cannedPatterns, known.canned);
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
    this.#signals = new SignalDispatcher(this.#o.signals, this.#ledger, this.#log, {
      shadow: this.#o.mode === "shadow",
      track: (p) => this.#track(p),
      retryAfterMs: this.#o.signalCooldownMs,
    });
    this.#episodes = new EpisodeBook(this.#ledger, this.#catalog, this.#signals, this.#log, {
      maxSessions: this.#o.maxSessions,
      signalCooldownMs: this.#o.signalCooldownMs,
    });
    this.#alerts = new BudgetAlerts(this.#limits, this.#signals, this.#ledger, this.#o);
    this.#admission = new AdmissionQueue(this.#ledger, this.#limits, {
      clock,
      shadow: this.#o.mode === "shadow",
      onError: this.#o.onError,
      ownerId: this.#upkeep.owner.id,
    });
    this.#settlements = new Settlements(this.#ledger, {
      prices: this.#prices,
      estimator: this.#estimator,
      limits: this.#limits,
      alerts: this.#alerts,
      clock,
      log: this.#log,
      settled: () => this.#admission.wake(),
    });
    this.#upkeep.start(() => this.#tick());
  }

  /** The ledger behind this guard. */
  get store(): LedgerStore {
    return this.#store;
  }

  /**
   * Why the ledger cannot be used right now (calls fail as `onError` says until the heartbeat
   * finds it usable again), or null.
   */
  get ledgerFault(): Error | null {
    return this.#store.fault ?? null;
  }

  /** Counters since creation (a snapshot). */
  get stats(): GuardStats {
    const s = this.#stats;
    return {
      judged: this.#settlements.judged,
      failed: this.#settlements.failed,
      reused: s.reused,
      skipped: { ...s.skipped },
      chargedUsd: toUsd(this.#settlements.chargedMicros),
      savedUsd: toUsd(s.savedMicros),
      stuckEpisodes: this.#episodes.opened,
      stuckKeys: this.#episodes.stuckKeys.size,
      signalsDelivered: this.#signals.delivered,
      signalsFailed: this.#signals.failed,
      ledgerErrors: this.#ledger.errors,
      reclaimedReservations: this.#upkeep.reclaimed,
      unsettled: this.#settlements.unsettled,
    };
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
    const p = this.#prepare(request, options.knownUsage);
    if (p.kind === "skipped") return p.outcome;
    const { req, obs, now } = p;
    if (this.#o.verdictTtlMs === 0 || this.#o.mode === "shadow") return this.#judgeOnce(p, judge, options);

    const cacheKey = identity(req, obs);
    let awaited: Promise<unknown> | undefined;
    for (;;) {
      // A repeat after an identical call completed (within the verdict TTL) reuses its verdict.
      const known = this.#verdicts.get(cacheKey);
      if (known !== undefined) {
        this.#recordSkip(req, obs, now, "duplicate", known.chargedMicros, null);
        this.#stats.reused++;
        this.#stats.savedMicros += known.chargedMicros;
        return { status: "reused", value: known.value as T, savedUsd: toUsd(known.chargedMicros) };
      }
      // Concurrent identical calls stay independent (each is a vote, as in Phantom's minority
      // veto) unless the caller opts in to share one call's verdict.
      if (options.share !== true) break;
      const shared = this.#inflight.get(cacheKey);
      if (shared === undefined || shared === awaited) break;
      awaited = shared;
      // An identical call is in flight: wait for its verdict rather than pay twice. If it
      // fails, look again: another waiter may already be retrying it.
      await shared.catch(() => undefined);
    }
    const work = this.#judgeOnce(p, judge, options);
    this.#inflight.set(cacheKey, work);
    try {
      const outcome = await work;
      if (outcome.status === "judged") {
        this.#verdicts.set(cacheKey, { value: outcome.value, chargedMicros: toMicros(outcome.costUsd) });
      }
      return outcome;
    } finally {
      if (this.#inflight.get(cacheKey) === work) this.#inflight.delete(cacheKey);
    }
  }

  /**
   * The first half of {@link run}, for a caller that makes the judge call itself (the sidecar's
   * HTTP clients): the same stuck check and budget admission, then a reservation held until
   * {@link settle}. Identical requests are not merged here (the guard never sees the verdict).
   */
  async admit(
    request: JudgeRequest,
    options: { knownUsage?: Usage; waitMs?: number; ttlMs?: number } = {},
  ): Promise<Ticket | SkippedOutcome> {
    const p = this.#prepare(request, options.knownUsage);
    if (p.kind === "skipped") return p.outcome;
    const ttlMs = options.ttlMs ?? REMOTE_TTL_MS;
    const a = await this.#admit(p, options.knownUsage, { waitMs: options.waitMs, remote: true, ttlMs });
    if (a.kind === "skipped") return a.outcome;
    const { call } = a;
    this.#tickets.set(call.reservationId, { call, started: performance.now() });
    return {
      status: "admitted",
      reservationId: call.reservationId,
      reservedUsd: toUsd(call.estimate.expectedMicros),
      shadowReason: call.shadowReason,
    };
  }

  /**
   * The second half: charges what the admitted call really cost (`ok: false` for a call that
   * failed, charging any partial cost given) and releases the reservation.
   */
  settle(reservationId: string, result: Settlement): { costUsd: number } {
    if (this.#closed) throw new GuardClosedError();
    let ticket = this.#tickets.get(reservationId);
    if (ticket !== undefined) this.#tickets.delete(reservationId);
    else {
      // Admitted by a guard that is gone (a sidecar that crashed and restarted), or charged at
      // its estimate after its timeout: the call was made, so its settlement counts.
      const row = this.#ledger.attempt(() => this.#store.reservation(reservationId));
      if (row === undefined || (row.chargedMicros !== null && result.expired)) {
        throw new InvalidRequestError(
          "reservation_id",
          `no open reservation ${JSON.stringify(reservationId)}: it was settled already, or never made`,
        );
      }
      const started = performance.now() - Math.max(0, this.#o.clock.now() - row.createdMs);
      ticket = { call: pendingCallOfRow(row), started };
    }
    const { call, started } = ticket;
    // An expired call's client never said what it cost: charge what was reserved, not nothing,
    // and keep the reservation's row, so that a settlement arriving after all corrects it.
    const reported: ReportedCost = result.expired
      ? { costUsd: toUsd(call.estimate.expectedMicros), estimated: true }
      : result;
    const decision = result.ok && !result.expired ? "judged" : "failed";
    const charged = this.#settlements.settle(call, decision, reported, started, result.expired === true);
    return { costUsd: toUsd(charged.micros) };
  }

  /** Reservations admitted through {@link admit} and not settled yet, oldest first. */
  openTickets(): Array<{ reservationId: string; ageMs: number }> {
    const now = performance.now();
    return [...this.#tickets].map(([id, t]) => ({ reservationId: id, ageMs: now - t.started }));
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
    return outcomeValue(await this.run(request, judge, options), options);
  }

  /**
   * Looks at a session without calling a judge: should the judges it would run be skipped?
   * Updates the stuck state exactly as `run` would (an episode opens, the runtime is
   * signalled). When the answer is to skip, each of `options.judges` (the calls the caller
   * will not make) is recorded as a skipped decision with its estimated cost, so the ledger and
   * `stats` show what was saved. In shadow mode `skip` is always false. The pipeline adapters
   * use it to skip a whole evolution cycle.
   */
  assess(session: SessionRef, options: AssessOptions = {}): Assessment {
    if (this.#closed) throw new GuardClosedError();
    const s = normalizeSession(session);
    // Checked before the session is observed, so a bad entry changes nothing.
    const judges = (options.judges ?? []).map(
      (j): NormalizedRequest => ({
        ...normalizeRequest({
          sessionKey: s.sessionKey,
          judge: j.judge,
          model: j.model,
          ...(j.variant !== undefined && { variant: j.variant }),
          ...(j.maxTokens !== undefined && { maxTokens: j.maxTokens }),
        }),
        ...s,
      }),
    );
    checkTranscriptSize(session, s, this.#transcriptLimit, this.#charsOf(s));
    const { obs, now, stuck: verdict } = this.#observe(s);
    const skip = (verdict.stuck || s.facts?.handled === false) && this.#o.mode !== "shadow";
    if (skip) {
      for (const req of judges) {
        const saved = this.#estimator.estimate(
          req.judge,
          req.model,
          obs.transcriptChars,
          req.maxTokens,
        ).expectedMicros;
        this.#skip(req, obs, now, "stuck_session", saved, verdict.stuck ? { stuck: verdict } : {});
      }
    }
    return { ...verdict, skip };
  }

  /** A key's current state: stuck or not, and its spend against its caps within the window. */
  session(sessionKey: string): SessionState {
    const now = this.#o.clock.now();
    const ks = this.#episodes.state(sessionKey);
    const u = this.#store.scopeUsage(sessionKey, now - this.#o.budgetWindowMs);
    return {
      sessionKey,
      stuck: ks.stuck,
      episodeId: ks.episodeId,
      fingerprint: ks.fingerprint,
      repeats: ks.repeats,
      spentUsd: toUsd(u.spentMicros),
      calls: u.calls,
      budgetUsd: toUsd(this.#o.sessionBudgetMicros),
      maxCalls: this.#o.sessionMaxCalls,
    };
  }

  /**
   * Why the key is or is not stuck: the evidence each of its last replies (up to a dozen) added,
   * as fingerprints, lengths, weights and reason codes (never text). Empty for a key whose
   * transcript this process has not seen (or no longer keeps in memory).
   */
  explain(sessionKey: string): readonly EvidenceStep[] {
    return (this.#tracker.explain(sessionKey) ?? []).map(plainStep);
  }

  /**
   * Operator action: ends a key's stuck episode. The replies so far stop counting; judging
   * resumes, and only new canned replies can make the key stuck again.
   */
  resetSession(sessionKey: string): void {
    this.#episodes.reset(sessionKey, this.#o.clock.now());
    this.#tracker.resetRun(sessionKey);
  }

  /**
   * Operator action: removes a fingerprint from the registry of known canned replies (after a
   * false positive), in this process and in the ledger.
   */
  forgetCanned(fingerprint: string): void {
    this.#catalog.removeFingerprint(fingerprint);
    this.#ledger.attempt(() => this.#store.removeCannedFingerprint(fingerprint));
  }

  /** Waits for judge calls and signal deliveries in flight, then releases the ledger. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    this.#upkeep.stop();
    this.#upkeep.checkLedger(); // a ledger that can be used again takes the settlements it refused
    this.#settlements.retry();
    this.#settlements.saveLearned();
    await this.#signals.close();
    this.#upkeep.release();
    if (this.#ownsStore) this.#store.close();
  }

  // ---------------------------------------------------------------------------------------

  /** What `run` and `admit` share: validation, the session's new replies, the stuck check. */
  #prepare(
    request: JudgeRequest,
    knownUsage: Usage | undefined,
  ): Prepared | { kind: "skipped"; outcome: SkippedOutcome } {
    if (this.#closed) throw new GuardClosedError();
    const req = normalizeRequest(request);
    // Before the transcript is observed, so that a refused request changes nothing.
    checkTranscriptSize(request, req, this.#transcriptLimit, this.#charsOf(req));
    const { obs, now, stuck } = this.#observe(req);
    const estimate = this.#estimate(req, obs);
    const savedMicros = knownUsage ? this.#prices.costMicros(req.model, knownUsage) : estimate.expectedMicros;
    // A turn the runtime did not handle (a busy bounce) is not judged, stuck yet or not.
    if ((stuck.stuck || req.facts?.handled === false) && this.#o.mode !== "shadow") {
      const why = stuck.stuck ? { stuck } : {};
      return { kind: "skipped", outcome: this.#skip(req, obs, now, "stuck_session", savedMicros, why) };
    }
    const shadowReason = stuck.stuck ? "stuck_session" : null;
    return { kind: "prepared", req, obs, now, estimate, savedMicros, shadowReason };
  }

  /** The transcript's characters, counting only what a resent one added. */
  #charsOf(s: NormalizedSession): number {
    return this.#tracker.transcriptChars(s.sessionKey, s.userMessages, s.assistantMessages);
  }

  get #transcriptLimit(): TranscriptLimit {
    return { maxTokens: this.#o.maxTranscriptTokens, charsPerToken: this.#o.estimator.charsPerToken };
  }

  /**
   * A call's estimate. Its worst case, held against the caps while it runs, covers the models it
   * may escalate to: those the request names, or any model (the `escalation` option's default),
   * since a judge that reports a pricier model than it was admitted on is charged that price.
   */
  #estimate(req: NormalizedRequest, obs: Observation): Estimate {
    // A named chain adds to the ceiling rather than replacing it: a judge that reports a model its
    // request did not name is still covered, unless the operator chose `none`.
    return this.#estimator.estimate(req.judge, req.model, obs.transcriptChars, req.maxTokens, {
      chain: req.escalation,
      ceiling: this.#o.escalation === "ceiling",
    });
  }

  /** What the session's transcript says now: the tracker's observation and the stuck verdict. */
  #observe(s: NormalizedSession): { obs: Observation; now: number; stuck: StuckVerdict } {
    const now = this.#o.clock.now();
    const obs = this.#tracker.observe(s.sessionKey, s.userMessages, s.assistantMessages, s.facts);
    const trail = () => this.explain(s.sessionKey);
    return { obs, now, stuck: this.#episodes.update(obs, now, trail) };
  }

  /** Admission, then the call within the concurrency limit, then settlement. */
  #judgeOnce<T>(p: Prepared, judge: () => Promise<T> | T, options: RunOptions<T>): Promise<Outcome<T>> {
    const work = (async (): Promise<Outcome<T>> => {
      const a = await this.#admit(p, options.knownUsage);
      if (a.kind === "skipped") return a.outcome;
      return this.#limit(() => this.#call(a.call, judge, options));
    })();
    this.#track(work);
    return work;
  }

  /** Admits a prepared call (waiting in line near a cap), or skips it with the reason. */
  async #admit(
    p: Prepared,
    knownUsage: Usage | undefined,
    how: { waitMs?: number | undefined; remote?: boolean; ttlMs?: number } = {},
  ): Promise<{ kind: "admitted"; call: PendingCall } | { kind: "skipped"; outcome: SkippedOutcome }> {
    const waitMs = Math.min(how.waitMs ?? this.#o.admissionWaitMs, this.#o.admissionWaitMs);
    const { req, obs } = p;
    const call: PendingCall = {
      sessionKey: req.sessionKey,
      judge: req.judge,
      model: req.model,
      turns: obs.turns,
      transcriptChars: obs.transcriptChars,
      transcriptHash: obs.transcriptHash,
      reservationId: randomUUID(),
      remote: how.remote === true,
      ttlMs: how.ttlMs ?? 0,
      knownUsage,
      estimate: p.estimate,
      shadowReason: p.shadowReason,
      at: p.now,
      reserved: false,
    };
    const a = await this.#admission.admit(call, performance.now() + waitMs, () => this.#estimate(req, obs));
    if (a.kind === "admitted") return a;
    const outcome =
      a.kind === "refused"
        ? this.#skip(req, obs, a.at, a.refusal.reason, p.savedMicros, { refusal: a.refusal })
        : this.#skip(req, obs, a.at, "ledger_error", p.savedMicros, { cause: a.cause });
    return { kind: "skipped", outcome };
  }

  async #call<T>(
    call: PendingCall,
    judge: () => Promise<T> | T,
    options: RunOptions<T>,
  ): Promise<Outcome<T>> {
    const started = performance.now();
    let value: T;
    try {
      value = await judge();
    } catch (error) {
      this.#settlements.settle(call, "failed", this.#usageOfError(error), started);
      throw error;
    }
    const usageOf =
      (options.usageOf as ((r: unknown) => ReportedCost | undefined) | undefined) ?? this.#usageOf;
    const reported = usageOf(value);
    if (reported?.usage === undefined && reported?.costUsd === undefined && hasUnreadUsage(value))
      this.#warnUnread(call.judge, call.model);
    const charged = this.#settlements.settle(call, "judged", reported, started);
    return {
      status: "judged",
      value,
      costUsd: toUsd(charged.micros),
      usage: charged.usage,
      reservedUsd: toUsd(call.estimate.expectedMicros),
      shadowReason: call.shadowReason,
    };
  }

  #skip(
    req: NormalizedRequest,
    obs: Observation,
    now: number,
    reason: SkipReasonNotDuplicate,
    savedMicros: number,
    why: { stuck?: StuckVerdict; refusal?: Refusal; cause?: unknown },
  ): SkippedOutcome {
    // A would-be call counts once: a repeat of a skipped identity is recorded but saves nothing.
    const id = identity(req, obs);
    if (this.#savedOnce.has(id)) savedMicros = 0;
    else this.#savedOnce.set(id, true);
    const inCalls = why.refusal?.reason === "session_calls";
    const details: SkipDetails = {
      sessionKey: req.sessionKey,
      judge: req.judge,
      model: req.model,
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
    if (why.refusal) this.#alerts.refused(why.refusal, req, now);
    if (reason !== "ledger_error")
      this.#recordSkip(req, obs, now, reason, savedMicros, why.stuck?.episodeId ?? null);
    this.#stats.skipped[reason]++;
    this.#stats.savedMicros += savedMicros;
    return {
      status: "skipped",
      reason,
      code,
      error: skipError(code, details, why.cause),
      savedUsd: toUsd(savedMicros),
    };
  }

  #recordSkip(
    req: NormalizedRequest,
    obs: Observation,
    now: number,
    reason: SkipReason,
    savedMicros: number,
    episodeId: string | null,
  ): void {
    this.#ledger.attempt(() =>
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
   * A judge's result carried a usage object in a shape the guard does not read: its call is
   * charged its estimate. Said once per judge kind and model, so the caller can give `usageOf`.
   */
  #warnUnread(judge: string, model: string): void {
    const key = `${judge}\u0000${model}`;
    if (this.#unreadWarned.has(key)) return;
    this.#unreadWarned.set(key, true);
    this.#log.warn(
      { judge, model },
      "the judge's result has a usage object in a shape the guard does not read: charged its estimate; give usageOf",
    );
  }

  #track(p: Promise<unknown>): void {
    this.#pending.add(p);
    const done = () => this.#pending.delete(p);
    p.then(done, done);
  }

  #tick(): void {
    this.#upkeep.checkLedger();
    this.#settlements.retry();
    // Canned lines confirmed by other processes sharing the ledger.
    this.#upkeep.beat(() => {
      for (const f of this.#store.cannedFingerprints()) this.#catalog.addFingerprint(f);
    });
    this.#settlements.saveLearned();
  }
}

/** Creates a guard. See {@link GuardOptions}; `fromEnv()` builds the options from the environment. */
export function createGuard(options: GuardOptions = {}): Guard {
  return new Guard(options);
}
