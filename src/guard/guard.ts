import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import pLimit, { type LimitFunction } from "p-limit";
import { admit, type BudgetSnapshot, type Refusal } from "../budget/admission.js";
import { BudgetAlerts } from "../budget/alerts.js";
import { CostEstimator, type Estimate } from "../budget/estimator.js";
import { BudgetLimits, DAY_MS } from "../budget/limits.js";
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
import { judgeScope, scopeOf } from "../store/buckets.js";
import { MemoryStore } from "../store/memory.js";
import { SafeLedger } from "../store/safe.js";
import { SqliteStore } from "../store/sqlite.js";
import type {
  CostSource,
  DecisionRecord,
  EstimateStats,
  LedgerStore,
  SkipReason,
  StoredReservation,
} from "../store/types.js";
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

const ADMISSION_POLL_MS = 50;

interface Verdict {
  readonly value: unknown;
  readonly chargedMicros: number;
}

/** A call waiting for admission near a cap. */
interface Waiter {
  readonly req: NormalizedRequest;
  readonly obs: Observation;
  readonly savedMicros: number;
  readonly shadowReason: SkipReason | null;
  readonly knownUsage: Usage | undefined;
  readonly reservationId: string;
  /** Settled by id through `settle` (see {@link ReservationRecord.remote}), and how long it may wait for that once its owner is gone. */
  readonly remote: boolean;
  readonly ttlMs: number;
  /** performance.now() past which it stops waiting. */
  readonly deadline: number;
  resolve: (r: Admitted | SkippedOutcome) => void;
  /** The scope that refused it last (see {@link scopesOf}). */
  blockedBy?: string;
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
  readonly remote: boolean;
}

/** What a settlement needs of a call: an admitted one, or one known only by its ledger row. */
interface Settling {
  readonly sessionKey: string;
  readonly judge: string;
  readonly model: string;
  /** Admission time on the guard's clock: the charge lands in this time's bucket. */
  readonly at: number;
  readonly reservationId: string;
  /** False when the ledger failed at admission and the call ran unguarded. */
  readonly reserved: boolean;
  readonly shadowReason: SkipReason | null;
  readonly expectedMicros: number;
  /** What the estimator learns from when the judge reports no usage; null: learn nothing. */
  readonly expected: Usage | null;
  readonly knownUsage: Usage | undefined;
  readonly turns: number;
  readonly transcriptChars: number;
  readonly transcriptHash: string;
}

function settlingOf(a: Admitted): Settling {
  return {
    sessionKey: a.req.sessionKey,
    judge: a.req.judge,
    model: a.req.model,
    at: a.at,
    reservationId: a.reservationId,
    reserved: a.reserved,
    shadowReason: a.shadowReason,
    expectedMicros: a.estimate.expectedMicros,
    expected: a.estimate.expected,
    knownUsage: a.knownUsage,
    turns: a.obs.turns,
    transcriptChars: a.obs.transcriptChars,
    transcriptHash: a.obs.transcriptHash,
  };
}

/** A reservation known only by its ledger row: admitted by a guard that is gone (a restarted sidecar). */
function settlingOfRow(r: StoredReservation): Settling {
  return {
    sessionKey: r.sessionKey,
    judge: r.judge,
    model: r.model,
    at: r.createdMs,
    reservationId: r.id,
    reserved: true,
    shadowReason: null,
    expectedMicros: r.expectedMicros,
    expected: null,
    knownUsage: undefined,
    turns: r.turns ?? 0,
    transcriptChars: r.transcriptChars ?? 0,
    transcriptHash: r.transcriptHash ?? "",
  };
}

/** The budget scopes a call counts against: everything, its key and its judge kind. */
const scopesOf = (req: NormalizedRequest): readonly string[] => [
  "*",
  scopeOf(req.sessionKey),
  judgeScope(req.judge),
];

/** The scope a refusal was made for, as {@link scopesOf} names it. */
function refusedScope(req: NormalizedRequest, reason: Refusal["reason"]): string {
  if (reason === "global_budget") return "*";
  if (reason === "judge_budget") return judgeScope(req.judge);
  return scopeOf(req.sessionKey);
}

function scaleUsage(u: Usage, by: number): Usage {
  return {
    inputTokens: Math.ceil(u.inputTokens * by),
    outputTokens: Math.ceil(u.outputTokens * by),
  };
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
  readonly #tickets = new Map<string, { admitted: Admitted; started: number }>();
  readonly #pending = new Set<Promise<unknown>>();
  /** Admissions waiting for calls in flight to settle, in arrival order. */
  #queue: Waiter[] = [];
  #pumpTimer: NodeJS.Timeout | undefined;
  /** Estimator rows learned since they were last written to the ledger. */
  readonly #learned = new Map<string, EstimateStats>();
  /** Settlements the ledger refused; retried on the heartbeat so no reservation leaks. */
  readonly #unsettled: Array<() => void> = [];
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
    judged: 0,
    failed: 0,
    reused: 0,
    skipped: {
      stuck_session: 0,
      session_budget: 0,
      session_calls: 0,
      judge_budget: 0,
      global_budget: 0,
      ledger_error: 0,
    },
    chargedMicros: 0,
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
      judged: s.judged,
      failed: s.failed,
      reused: s.reused,
      skipped: { ...s.skipped },
      chargedUsd: toUsd(s.chargedMicros),
      savedUsd: toUsd(s.savedMicros),
      stuckEpisodes: this.#episodes.opened,
      stuckKeys: this.#episodes.stuckKeys.size,
      signalsDelivered: this.#signals.delivered,
      signalsFailed: this.#signals.failed,
      ledgerErrors: this.#ledger.errors,
      reclaimedReservations: this.#upkeep.reclaimed,
      unsettled: this.#unsettled.length,
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
    const prepared = this.#prepare(request, options.knownUsage);
    if ("status" in prepared) return prepared;
    const { req, obs, now, estimate, savedMicros, shadowReason } = prepared;
    const shadow = this.#o.mode === "shadow";
    if (this.#o.verdictTtlMs === 0 || shadow) {
      return this.#judgeOnce(req, obs, estimate, savedMicros, judge, options, shadowReason);
    }

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
    const work = this.#judgeOnce(req, obs, estimate, savedMicros, judge, options, shadowReason);
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
    const prepared = this.#prepare(request, options.knownUsage);
    if ("status" in prepared) return prepared;
    const { req, obs, estimate, savedMicros, shadowReason } = prepared;
    const admitted = await this.#admit(req, obs, estimate, savedMicros, shadowReason, options.knownUsage, {
      waitMs: options.waitMs,
      remote: true,
      ttlMs: options.ttlMs ?? REMOTE_TTL_MS,
    });
    if ("status" in admitted) return admitted;
    this.#tickets.set(admitted.reservationId, { admitted, started: performance.now() });
    return {
      status: "admitted",
      reservationId: admitted.reservationId,
      reservedUsd: toUsd(admitted.estimate.expectedMicros),
      shadowReason: admitted.shadowReason,
    };
  }

  /**
   * The second half: charges what the admitted call really cost (`ok: false` for a call that
   * failed, charging any partial cost given) and releases the reservation.
   */
  settle(reservationId: string, result: Settlement): { costUsd: number } {
    if (this.#closed) throw new GuardClosedError();
    const t = this.#tickets.get(reservationId);
    let call: Settling;
    let started: number;
    if (t !== undefined) {
      this.#tickets.delete(reservationId);
      call = settlingOf(t.admitted);
      started = t.started;
    } else {
      // Admitted by a guard that is gone (a sidecar that crashed and restarted), or charged at
      // its estimate after its timeout: the call was made, so its settlement counts.
      const row = this.#ledger.attempt(() => this.#store.reservation(reservationId));
      if (row === undefined || (row.chargedMicros !== null && result.expired)) {
        throw new InvalidRequestError(
          "reservation_id",
          `no open reservation ${JSON.stringify(reservationId)}: it was settled already, or never made`,
        );
      }
      call = settlingOfRow(row);
      started = performance.now() - Math.max(0, this.#o.clock.now() - row.createdMs);
    }
    // An expired call's client never said what it cost: charge what was reserved, not nothing,
    // and keep the reservation's row, so that a settlement arriving after all corrects it.
    const reported: ReportedCost = result.expired
      ? { costUsd: toUsd(call.expectedMicros), estimated: true }
      : result;
    const decision = result.ok && !result.expired ? "judged" : "failed";
    const charged = this.#settle(call, decision, reported, started, { keep: result.expired === true });
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
    this.#retryUnsettled();
    this.#saveLearned();
    await this.#signals.close();
    this.#upkeep.release();
    if (this.#ownsStore) this.#store.close();
  }

  // ---------------------------------------------------------------------------------------

  /** What `run` and `admit` share: validation, the session's new replies, the stuck check. */
  #prepare(
    request: JudgeRequest,
    knownUsage: Usage | undefined,
  ):
    | SkippedOutcome
    | {
        req: NormalizedRequest;
        obs: Observation;
        now: number;
        estimate: Estimate;
        savedMicros: number;
        shadowReason: SkipReason | null;
      } {
    if (this.#closed) throw new GuardClosedError();
    const req = normalizeRequest(request);
    // Before the transcript is observed, so that a refused request changes nothing.
    checkTranscriptSize(request, req, this.#transcriptLimit, this.#charsOf(req));
    const { obs, now, stuck } = this.#observe(req);
    const estimate = this.#estimate(req, obs);
    const savedMicros = knownUsage ? this.#prices.costMicros(req.model, knownUsage) : estimate.expectedMicros;
    // A turn the runtime did not handle (a busy bounce) is not judged, stuck yet or not.
    if ((stuck.stuck || req.facts?.handled === false) && this.#o.mode !== "shadow")
      return this.#skip(req, obs, now, "stuck_session", savedMicros, stuck.stuck ? { stuck } : {});
    return { req, obs, now, estimate, savedMicros, shadowReason: stuck.stuck ? "stuck_session" : null };
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
  #judgeOnce<T>(
    req: NormalizedRequest,
    obs: Observation,
    estimate: Estimate,
    savedMicros: number,
    judge: () => Promise<T> | T,
    options: RunOptions<T>,
    shadowReason: SkipReason | null,
  ): Promise<Outcome<T>> {
    const work = (async (): Promise<Outcome<T>> => {
      const admitted = await this.#admit(req, obs, estimate, savedMicros, shadowReason, options.knownUsage);
      if ("status" in admitted) return admitted;
      return this.#limit(() => this.#call(admitted, judge, options));
    })();
    this.#track(work);
    return work;
  }

  async #admit(
    req: NormalizedRequest,
    obs: Observation,
    estimate: Estimate,
    savedMicros: number,
    shadowReason: SkipReason | null,
    knownUsage: Usage | undefined,
    how: { waitMs?: number | undefined; remote?: boolean; ttlMs?: number } = {},
  ): Promise<Admitted | SkippedOutcome> {
    const waitMs = how.waitMs ?? this.#o.admissionWaitMs;
    const w: Waiter = {
      req,
      obs,
      savedMicros,
      shadowReason,
      knownUsage,
      reservationId: randomUUID(),
      remote: how.remote === true,
      ttlMs: how.ttlMs ?? 0,
      deadline: performance.now() + Math.min(waitMs, this.#o.admissionWaitMs),
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
      remote: w.remote,
    });
    let refusal: Refusal | null;
    try {
      refusal = this.#store.atomically(() => {
        const r = admit(
          this.#limits.usage(req.sessionKey, now, req.judge),
          estimate,
          this.#limits.caps(req.judge),
        );
        if (r !== null && !shadow) return r;
        this.#store.openReservation({
          id: w.reservationId,
          ownerId: this.#upkeep.owner.id,
          sessionKey: req.sessionKey,
          judge: req.judge,
          model: req.model,
          expectedMicros: estimate.expectedMicros,
          worstMicros: estimate.worstMicros,
          createdMs: now,
          remote: w.remote,
          ttlMs: w.ttlMs,
          turns: w.obs.turns,
          transcriptChars: w.obs.transcriptChars,
          transcriptHash: w.obs.transcriptHash,
        });
        return r;
      });
    } catch (e) {
      this.#ledger.failed(e, "admission");
      if (this.#o.onError === "closed")
        return this.#skip(req, w.obs, now, "ledger_error", w.savedMicros, { cause: e });
      return admitted(false, w.shadowReason);
    }
    if (refusal === null) return admitted(true, w.shadowReason);
    if (shadow) return admitted(true, w.shadowReason ?? refusal.reason);
    if (refusal.concurrency && performance.now() < w.deadline) {
      w.blockedBy = refusedScope(req, refusal.reason);
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
    const blocked = new Set<string>();
    const still: Waiter[] = [];
    for (const w of this.#queue) {
      const scopeBlocked = scopesOf(w.req).some((scope) => blocked.has(scope));
      if (scopeBlocked && performance.now() < w.deadline) {
        still.push(w);
        continue;
      }
      // A settlement meanwhile may have taught the estimator this judge's worst case.
      const estimate = this.#estimate(w.req, w.obs);
      const r = this.#tryAdmit(w, estimate);
      if (r !== "wait") {
        w.resolve(r);
        continue;
      }
      still.push(w);
      if (w.blockedBy !== undefined) blocked.add(w.blockedBy);
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
      this.#settle(settlingOf(a), "failed", this.#usageOfError(error), started);
      throw error;
    }
    const usageOf =
      (options.usageOf as ((r: unknown) => ReportedCost | undefined) | undefined) ?? this.#usageOf;
    const reported = usageOf(value);
    if (reported?.usage === undefined && reported?.costUsd === undefined && hasUnreadUsage(value))
      this.#warnUnread(a.req.judge, a.req.model);
    const charged = this.#settle(settlingOf(a), "judged", reported, started);
    return {
      status: "judged",
      value,
      costUsd: toUsd(charged.micros),
      usage: charged.usage,
      reservedUsd: toUsd(a.estimate.expectedMicros),
      shadowReason: a.shadowReason,
    };
  }

  /** Settles to the actual cost: releases the reservation, charges the budgets, records the decision. */
  #settle(
    a: Settling,
    decision: "judged" | "failed",
    reported: ReportedCost | undefined,
    started: number,
    how: { keep?: boolean } = {},
  ): { micros: number; usage: Usage | null } {
    const failed = decision === "failed";
    const usage = reported?.usage ?? (failed ? null : (a.knownUsage ?? null));
    // Price at the model that really ran, where the judge says (an escalated Haiku call is Sonnet's price).
    const model = reported?.model ?? a.model;
    // The judge's own cost wins (it knows its cache use, retries and subagents, which its token
    // counts may not show); tokens x price only without one, and is recorded beside it.
    const computed = usage ? this.#prices.costMicros(model, usage) : null;
    const cost = reported?.costUsd;
    // A reported cost is finite and >= 0; a zero beside tokens that cost something is a
    // placeholder (a result type with a cost field nobody filled), not a free call.
    const validCost =
      typeof cost === "number" && Number.isFinite(cost) && cost >= 0 && (cost > 0 || !computed);
    let charged: number;
    let costSource: CostSource | null;
    if (validCost && !reported?.estimated) {
      charged = toMicros(cost);
      costSource = "reported";
    } else if (computed !== null) {
      charged = computed;
      costSource = "computed";
    } else if (validCost) {
      // The guard's own estimate (a call whose client never settled).
      charged = toMicros(cost);
      costSource = "estimate";
    } else if (failed) {
      charged = 0;
      costSource = null;
    } else {
      // The judge reported nothing: charge the estimate rather than pretend it was free.
      charged = a.expectedMicros;
      costSource = "estimate";
      this.#log.debug({ judge: a.judge, model: a.model }, "judge result has no usage: charged the estimate");
    }
    const record: DecisionRecord = {
      ts: a.at,
      sessionKey: a.sessionKey,
      judge: a.judge,
      model,
      decision,
      reason: a.shadowReason,
      shadow: a.shadowReason !== null,
      reservedMicros: a.reserved ? a.expectedMicros : 0,
      chargedMicros: charged,
      savedMicros: 0,
      inputTokens: usage?.inputTokens ?? 0,
      outputTokens: usage?.outputTokens ?? 0,
      cacheReadTokens: usage?.cacheReadTokens ?? 0,
      cacheWriteTokens: (usage?.cacheWriteTokens ?? 0) + (usage?.cacheWrite1hTokens ?? 0),
      turns: a.turns,
      transcriptChars: a.transcriptChars,
      transcriptHash: a.transcriptHash,
      durationMs: Math.round(performance.now() - started),
      episodeId: null,
      costSource,
      computedMicros: computed,
    };
    // Without tokens, a reported cost still teaches: the expected usage scaled to it, so that a
    // judge that costs far more than its estimate (an agent's many turns) is reserved for so.
    const learnFrom =
      usage ??
      (a.expected !== null && costSource === "reported" && a.expectedMicros > 0
        ? scaleUsage(a.expected, charged / a.expectedMicros)
        : a.expected);
    if (!failed && learnFrom !== null) {
      // A judge that reports no usage is learned from its estimate, so its estimate settles.
      const learned = this.#estimator.learn(a.judge, a.model, a.transcriptChars, learnFrom);
      this.#learned.set(`${learned.judge}\u0000${learned.model}`, learned);
    }
    // Budget alerts compare the usage after this charge with the caps: read it inside the
    // settlement's transaction, which holds the lock already, rather than in separate reads.
    let after: BudgetSnapshot | undefined;
    let moot = false;
    const write = () =>
      this.#store.atomically(() => {
        const id = a.reservationId;
        const prior = !a.reserved
          ? undefined
          : how.keep
            ? this.#store.reservation(id)
            : this.#store.takeReservation(id);
        if (how.keep && a.reserved && (prior === undefined || prior.chargedMicros !== null)) {
          // Timed out here, but settled (or charged) through another guard on the ledger meanwhile.
          moot = true;
          return;
        }
        if (!how.keep && prior?.chargedMicros != null && prior.decisionId !== null) {
          // Charged at its estimate meanwhile (its owner was presumed gone, or it timed out):
          // correct that charge to this one, in the same decision.
          this.#store.addUsage(a.sessionKey, prior.createdMs, charged - prior.chargedMicros, 0, a.judge);
          this.#store.updateDecision(prior.decisionId, record);
        } else {
          if (charged > 0 || !failed) this.#store.addUsage(a.sessionKey, a.at, charged, 1, a.judge);
          const decisionId = this.#store.recordDecision(record);
          // Kept, so that a settlement arriving after all (its client was only slow) corrects it.
          if (how.keep && prior !== undefined)
            this.#store.markCharged(id, charged, decisionId, this.#o.clock.now());
        }
        if (charged > 0 && this.#alerts.on) {
          try {
            after = this.#limits.usage(a.sessionKey, a.at, a.judge);
          } catch {
            // Never fail a settlement over its alert check: the alerts read again.
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
    if (moot) return { micros: 0, usage: null };
    if (failed) this.#stats.failed++;
    else this.#stats.judged++;
    this.#stats.chargedMicros += charged;
    if (charged > 0) this.#alerts.check(a.sessionKey, a.judge, a.at, after);
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

  #retryUnsettled(): void {
    while (this.#unsettled.length > 0) {
      try {
        this.#unsettled[0]!();
        this.#unsettled.shift();
      } catch {
        return;
      }
    }
  }

  #tick(): void {
    this.#upkeep.checkLedger();
    this.#retryUnsettled();
    // Canned lines confirmed by other processes sharing the ledger.
    this.#upkeep.beat(() => {
      for (const f of this.#store.cannedFingerprints()) this.#catalog.addFingerprint(f);
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
    this.#ledger.attempt(() =>
      this.#store.atomically(() => {
        for (const r of rows) this.#store.saveEstimateStats(r);
      }),
    );
  }
}

/** Creates a guard. See {@link GuardOptions}; `fromEnv()` builds the options from the environment. */
export function createGuard(options: GuardOptions = {}): Guard {
  return new Guard(options);
}
