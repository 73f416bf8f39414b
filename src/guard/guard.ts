import { BudgetAlerts } from "../budget/alerts.js";
import { CostEstimator } from "../budget/estimator.js";
import { BudgetLimits, DAY_MS } from "../budget/limits.js";
import { AdmissionQueue } from "../budget/queue.js";
import { Settlements } from "../budget/settlement.js";
import { CannedCatalog } from "../detection/catalog.js";
import { SessionTracker } from "../detection/tracker.js";
import type { EvidenceStep } from "../detection/window.js";
import { ConfigError, GuardClosedError, isLedgerFaultError } from "../errors.js";
import { createLogger, type Logger } from "../log/logger.js";
import { PriceTable, type Usage } from "../pricing/prices.js";
import { readUsage } from "../pricing/usage.js";
import { SignalDispatcher } from "../signals/dispatcher.js";
import { openStore } from "../store/open.js";
import { PostgresStore } from "../store/postgres.js";
import { SafeLedger } from "../store/safe.js";
import type { EstimateStats, LedgerStore } from "../store/types.js";
import { HEARTBEAT_MS, LedgerUpkeep } from "../store/upkeep.js";
import { toUsd } from "../util/money.js";
import { Calls } from "./calls.js";
import { EpisodeBook } from "./episodes.js";
import { Intake } from "./intake.js";
import { type GuardOptions, type ResolvedOptions, resolveOptions } from "./options.js";
import {
  type CallOptions,
  type Outcome,
  outcomeValue,
  type RunOptions,
  type SkippedOutcome,
} from "./outcome.js";
import type { JudgeRequest, SessionRef } from "./request.js";
import { VerdictReuse } from "./reuse.js";
import { Skips } from "./skips.js";
import type { Assessment, AssessOptions, GuardStats, SessionState, Settlement, Ticket } from "./types.js";

export type {
  AssessedJudge,
  Assessment,
  AssessOptions,
  GuardStats,
  SessionState,
  Settlement,
  Ticket,
} from "./types.js";

/**
 * The guard in front of every judge call. One verb, {@link Guard.run}: it fingerprints the
 * session's new replies, short-circuits stuck sessions and exhausted budgets, reuses verdicts
 * of identical requests, reserves an estimate, calls the judge within the concurrency limit,
 * settles the actual cost, and records every decision in the ledger.
 *
 * Each concern is a part of its own: `Intake` (validation and the stuck check), `VerdictReuse`,
 * `Calls` (admission through `AdmissionQueue`, the judge, `Settlements`), `Skips`,
 * `BudgetAlerts`, and `LedgerUpkeep` (the lease, reclaim and prune); this class wires them.
 */
export class Guard {
  readonly #o: ResolvedOptions;
  readonly #store: LedgerStore;
  readonly #ownsStore: boolean;
  /** The store, for writes whose failure is logged and counted rather than thrown. */
  readonly #ledger: SafeLedger;
  readonly #catalog: CannedCatalog;
  readonly #tracker: SessionTracker;
  readonly #episodes: EpisodeBook;
  readonly #signals: SignalDispatcher;
  readonly #upkeep: LedgerUpkeep;
  readonly #settlements: Settlements;
  readonly #queue: AdmissionQueue;
  readonly #skips: Skips;
  readonly #intake: Intake;
  readonly #reuse: VerdictReuse;
  readonly #calls: Calls;
  readonly #pending = new Set<Promise<unknown>>();
  #closed = false;

  constructor(options: GuardOptions = {}) {
    const resolved = resolveOptions(options);
    const { logger, ledger } = resolved;
    const log = typeof logger === "string" ? createLogger(logger) : logger;
    this.#ownsStore = typeof ledger === "string";
    this.#store = typeof ledger === "string" ? openStore(ledger) : ledger;
    // A store with a clock of its own (a database shared by hosts) dates everything, unless the
    // caller gave a clock: a host's wrong system clock then cannot move budgets.
    const clock = options.clock ?? this.#store.clock ?? resolved.clock;
    const o: ResolvedOptions = { ...resolved, clock };
    this.#o = o;
    this.#ledger = new SafeLedger(this.#store, log, { quietMs: HEARTBEAT_MS });
    const limits = new BudgetLimits(o, this.#store);
    if (limits.judgeCapped && typeof this.#store.judgeUsage !== "function") {
      if (this.#ownsStore) this.#store.close();
      throw new ConfigError(
        "judgeBudgetUsd",
        "caps per judge kind (judgeBudgetUsd, judgeBudgetsUsd) need a ledger store that reads spend per judge kind (judgeUsage): SqliteStore and MemoryStore do",
      );
    }
    const prices = new PriceTable(o.prices, (model) =>
      log.warn({ model }, "no price for this model: charging it at the highest known rate"),
    );
    warnShortLease(this.#store, o.leaseMs, log);
    const retainMs = Math.max(o.budgetWindowMs, DAY_MS) * 2;
    this.#upkeep = new LedgerUpkeep(this.#ledger, log, { clock, leaseMs: o.leaseMs, retainMs, caps: o });
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
    const estimator = new CostEstimator(prices, o.estimator, known.stats);
    this.#catalog = new CannedCatalog(o.cannedPatterns, known.canned);
    const { repeatThreshold, knownRepeatThreshold, minReplyChars, similarity, maxSessions } = o;
    const thresholds = { repeatThreshold, knownRepeatThreshold, minReplyChars, similarity, maxSessions };
    this.#tracker = new SessionTracker(thresholds, this.#catalog);
    const shadow = o.mode === "shadow";
    const track = (p: Promise<unknown>) => this.#track(p);
    const retryAfterMs = o.signalCooldownMs;
    this.#signals = new SignalDispatcher(o.signals, this.#ledger, log, { shadow, track, retryAfterMs });
    const episodeOptions = { maxSessions, signalCooldownMs: o.signalCooldownMs };
    this.#episodes = new EpisodeBook(this.#ledger, this.#catalog, this.#signals, log, episodeOptions);
    const alerts = new BudgetAlerts(limits, this.#signals, this.#ledger, o);
    const skips = new Skips(this.#ledger, alerts);
    this.#skips = skips;
    const queue = new AdmissionQueue(this.#ledger, limits, {
      clock,
      shadow,
      onError: o.onError,
      ownerId: this.#upkeep.owner.id,
    });
    this.#queue = queue;
    const settled = () => queue.wake();
    this.#settlements = new Settlements(this.#ledger, {
      prices,
      estimator,
      limits,
      alerts,
      clock,
      log,
      settled,
    });
    const tracker = this.#tracker;
    this.#intake = new Intake(o, { tracker, episodes: this.#episodes, estimator, prices, skips });
    this.#reuse = new VerdictReuse({ size: o.verdictCacheSize, ttlMs: o.verdictTtlMs, clock });
    const usageOf = options.usageOf ?? readUsage;
    const usageOfError = options.usageOfError ?? readUsage;
    this.#calls = new Calls(
      { concurrency: o.concurrency, admissionWaitMs: o.admissionWaitMs, usageOf, usageOfError, clock },
      { intake: this.#intake, queue, settlements: this.#settlements, skips, ledger: this.#ledger, log },
    );
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
    const settled = this.#settlements;
    const skips = this.#skips;
    return {
      judged: settled.judged,
      failed: settled.failed,
      reused: skips.reused,
      skipped: { ...skips.skipped },
      chargedUsd: toUsd(settled.chargedMicros),
      savedUsd: toUsd(skips.savedMicros),
      stuckEpisodes: this.#episodes.opened,
      stuckKeys: this.#episodes.stuckKeys.size,
      signalsDelivered: this.#signals.delivered,
      signalsFailed: this.#signals.failed,
      ledgerErrors: this.#ledger.errors,
      reclaimedReservations: this.#upkeep.reclaimed,
      unsettled: settled.unsettled,
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
    const p = this.#live().accept(request, options.knownUsage);
    if (p.kind === "skipped") return p.outcome;
    const judgeOnce = () => this.#track(this.#calls.run(p, judge, options));
    if (this.#o.verdictTtlMs === 0 || this.#o.mode === "shadow") return judgeOnce();
    const reuse = (known: { value: unknown; chargedMicros: number }): Outcome<T> => {
      this.#skips.reuse(p.subject, p.now, known.chargedMicros);
      return { status: "reused", value: known.value as T, savedUsd: toUsd(known.chargedMicros) };
    };
    return this.#reuse.run(p.subject.identity, options.share === true, reuse, judgeOnce);
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
    const p = this.#live().accept(request, options.knownUsage);
    if (p.kind === "skipped") return p.outcome;
    return this.#calls.admit(p, options.knownUsage, options);
  }

  /**
   * The second half: charges what the admitted call really cost (`ok: false` for a call that
   * failed, charging any partial cost given) and releases the reservation.
   */
  settle(reservationId: string, result: Settlement): { costUsd: number } {
    if (this.#closed) throw new GuardClosedError();
    return this.#calls.settle(reservationId, result);
  }

  /** Reservations admitted through {@link admit} and not settled yet, oldest first. */
  openTickets(): Array<{ reservationId: string; ageMs: number }> {
    return this.#calls.openTickets();
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
    return this.#live().assess(session, options);
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
    return this.#intake.explain(sessionKey);
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
    this.#ledger.attempt((s) => s.removeCannedFingerprint(fingerprint));
  }

  /** Waits for judge calls and signal deliveries in flight, then releases the ledger. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    this.#upkeep.stop();
    this.#upkeep.checkLedger(); // a ledger that can be used again takes the settlements it refused
    this.#settlements.retry();
    this.#queue.withdrawUncertain();
    this.#settlements.saveLearned();
    await this.#signals.close();
    this.#upkeep.release();
    if (this.#ownsStore) this.#store.close();
  }

  // ---------------------------------------------------------------------------------------

  /** The intake, while the guard is not closed. */
  #live(): Intake {
    if (this.#closed) throw new GuardClosedError();
    return this.#intake;
  }

  #track<R>(p: Promise<R>): Promise<R> {
    this.#pending.add(p);
    const done = () => this.#pending.delete(p);
    p.then(done, done);
    return p;
  }

  #tick(): void {
    this.#upkeep.checkLedger();
    this.#settlements.retry();
    this.#queue.withdrawUncertain();
    // Canned lines confirmed by other processes sharing the ledger.
    this.#upkeep.beat(() => {
      for (const f of this.#store.cannedFingerprints()) this.#catalog.addFingerprint(f);
    });
    this.#settlements.saveLearned();
  }
}

/**
 * On a PostgreSQL ledger, this guard renews its lease on its own thread, which waits while a
 * section waits for the fleet's lock (up to `lock_timeout`): a lease shorter than that wait plus
 * one heartbeat can lapse on a live host, whose calls in flight other hosts then set aside (still
 * counted at their worst case, never freed; charged at their estimate after ten leases, corrected
 * by their settlement). Not refused: the lease only decides when silence is taken for death, and a
 * short one is how tests and drills see a dead host reclaimed in seconds. See docs/postgres.md.
 */
function warnShortLease(store: LedgerStore, leaseMs: number, log: Logger): void {
  if (!(store instanceof PostgresStore)) return;
  const minimumMs = store.lockTimeoutMs + HEARTBEAT_MS;
  if (leaseMs >= minimumMs) return;
  log.warn(
    { leaseMs, minimumMs },
    `leaseMs (JUDGE_GUARD_LEASE) is shorter than the ledger's lock timeout plus one heartbeat: while this guard waits for the lock, other hosts may take it for gone and set its calls in flight aside (they keep counting); use at least ${minimumMs} ms`,
  );
}

/** Creates a guard. See {@link GuardOptions}; `fromEnv()` builds the options from the environment. */
export function createGuard(options: GuardOptions = {}): Guard {
  return new Guard(options);
}
