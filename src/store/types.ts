import type { StuckEvidence } from "../detection/evidence.js";
import type { EvidenceStep } from "../detection/window.js";
import type { Clock } from "../util/clock.js";
import type { DecisionId } from "./decision-ids.js";

/** What the ledger holds for one scope (a session key, or everything) within its window. */
export interface ScopeUsage {
  /** Settled spend within the window, micro-dollars. */
  readonly spentMicros: number;
  /** Settled calls within the window. */
  readonly calls: number;
  /** Reservations not yet settled. */
  readonly openCount: number;
  readonly openExpectedMicros: number;
  readonly openWorstMicros: number;
}

/**
 * Learned token sizes per judge kind and model, so that reservations are realistic: a judge
 * that answers in 300 tokens is not reserved at its 4096-token ceiling, which would cut a
 * session off long before its cap.
 */
export interface EstimateStats {
  readonly judge: string;
  readonly model: string;
  readonly samples: number;
  /** Exponentially weighted mean and variance of output tokens. */
  readonly outputMean: number;
  readonly outputVar: number;
  readonly outputMax: number;
  /** Observed input tokens divided by the character-based guess; weighted mean and maximum. */
  readonly inputRatio: number;
  readonly inputRatioMax: number;
}

/** Why a request was not judged. */
export type SkipReason =
  | "stuck_session"
  | "session_budget"
  | "session_calls"
  | "judge_budget"
  | "global_budget"
  | "duplicate"
  | "ledger_error";

/**
 * Where a decision's charge came from: `reported`, the judge's own cost; `computed`, its tokens
 * x the price table; `estimate`, nothing was reported and the reservation's estimate was charged.
 */
export type CostSource = "reported" | "computed" | "estimate";

/** One decision of the guard. Fingerprints, sizes and counts only: never transcript text. */
export interface DecisionRecord {
  readonly ts: number;
  readonly sessionKey: string;
  readonly judge: string;
  readonly model: string;
  /** `judged`: the judge ran and returned; `failed`: it ran and threw; `skipped`: it did not run. */
  readonly decision: "judged" | "failed" | "skipped";
  /** Why it was skipped, or (in shadow mode, with `decision: "judged"`) why it would have been. */
  readonly reason: SkipReason | null;
  readonly shadow: boolean;
  readonly reservedMicros: number;
  readonly chargedMicros: number;
  /** What a skipped call would have cost (its estimate, or its known cost in a replay). */
  readonly savedMicros: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cacheReadTokens: number;
  readonly cacheWriteTokens: number;
  readonly turns: number;
  readonly transcriptChars: number;
  readonly transcriptHash: string;
  readonly durationMs: number;
  readonly episodeId: string | null;
  /** Where `chargedMicros` came from; null (or absent) when nothing was charged (a skip). */
  readonly costSource?: CostSource | null;
  /**
   * Tokens x price of the call, where it gave tokens: equal to the charge when `computed`,
   * kept beside a `reported` charge so the two can be compared; null when no tokens were given.
   */
  readonly computedMicros?: number | null;
}

/**
 * The caps a guard enforced, recorded when it opens the ledger, so that a report reads the caps
 * in force when decisions were made rather than its own environment. No cap is null.
 */
export interface GuardConfigRecord {
  /** When the guard started, on its clock (the decisions' clock). */
  readonly startedMs: number;
  readonly ownerId: string;
  readonly mode: string;
  readonly sessionBudgetMicros: number | null;
  readonly sessionMaxCalls: number | null;
  readonly budgetWindowMs: number;
  readonly dailyBudgetMicros: number | null;
  /** The cap of every judge kind without one of its own (per 24 h, all keys), or null for none. */
  readonly judgeBudgetMicros?: number | null;
  /** Caps of named judge kinds (null: that kind has none); null or empty when none is named. */
  readonly judgeBudgets?: Readonly<Record<string, number | null>> | null;
}

export interface ReservationRecord {
  readonly id: string;
  readonly ownerId: string;
  readonly sessionKey: string;
  readonly judge: string;
  readonly model: string;
  readonly expectedMicros: number;
  readonly worstMicros: number;
  /** When the call was admitted: its charge lands in this time's bucket. */
  readonly createdMs: number;
  /**
   * Settled by its id, possibly through another guard sharing the ledger (`admit`/`settle`, the
   * sidecar's clients): its call goes on when its owner dies. A reservation made by `run` dies
   * with its process.
   */
  readonly remote?: boolean;
  /** How long a remote reservation whose owner is gone waits for its settlement. */
  readonly ttlMs?: number;
  /** The transcript the call judges (sizes and a hash; never text), for its decision record. */
  readonly turns?: number;
  readonly transcriptChars?: number;
  readonly transcriptHash?: string;
}

/** A reservation as the ledger keeps it, with what happened to it since. */
export interface StoredReservation extends ReservationRecord {
  /** When its owner was found gone; it still counts against the caps while it waits. */
  readonly orphanedMs: number | null;
  /**
   * Charged at its estimate without a settlement (its owner died, or its client never
   * settled): no longer counted as open, but a late settlement still corrects the charge.
   * Null while the reservation is open.
   */
  readonly chargedMicros: number | null;
  /** The decision recorded for that charge, which a late settlement rewrites. */
  readonly decisionId: DecisionId | null;
}

/** A guard instance that may hold reservations. */
export interface OwnerRecord {
  readonly id: string;
  readonly pid: number;
  readonly hostname: string;
  /** Process start marker (Linux: start time in clock ticks), to tell a reused pid apart. */
  readonly procStart: string | null;
  /** Kernel boot id: a pid means the same process only under the same boot... */
  readonly bootId?: string | null;
  /** ...and in the same PID namespace (containers of one pod share a hostname, not pids). */
  readonly pidNs?: string | null;
  readonly startedMs: number;
  /** The owner's clock at its last heartbeat (informational: liveness never reads it). */
  readonly heartbeatMs: number;
  /** Heartbeats so far: a live owner's count moves, whatever its clock says. */
  readonly beat?: number;
}

/** Persisted detection state of one session key, so a restart does not forget a stuck session. */
export interface KeyStateRecord {
  readonly sessionKey: string;
  readonly stuck: boolean;
  readonly episodeId: string | null;
  readonly fingerprint: string | null;
  readonly repeats: number;
  readonly lastSignalMs: number | null;
  /** Every signal channel has delivered this episode's signal: it is not sent again. */
  readonly signalled: boolean;
  readonly updatedMs: number;
}

export interface EpisodeRecord {
  readonly id: string;
  readonly sessionKey: string;
  readonly fingerprint: string;
  readonly evidence: StuckEvidence;
  /** Repeats of the canned reply when the episode was detected. */
  readonly repeats: number;
  /** Index (1-based) of the reply at which the episode was detected. */
  readonly detectedTurn: number;
  readonly startedMs: number;
  /** The evidence that decided, reply by reply (fingerprints and weights, no text). */
  readonly trail?: readonly EvidenceStep[] | undefined;
}

export interface SignalRecord {
  readonly ts: number;
  /** The event delivered: its episode id, or its budget alert id. */
  readonly eventId: string;
  readonly episodeId: string | null;
  readonly sessionKey: string;
  readonly channel: string;
  readonly event: string;
  /** `shadow`: shadow mode recorded what it would have sent, and sent nothing. */
  readonly status: "delivered" | "failed" | "shadow";
  readonly attempts: number;
  readonly error: string | null;
}

/** What {@link LedgerStore.check} found: nothing (`{}`), a fault, a recovery, or both. */
export interface LedgerCheck {
  /** The store is unavailable for this reason, or was found so now and recovered at once. */
  readonly fault?: Error;
  /** What was done to make the store available again, for the log. */
  readonly recovered?: string;
}

/** What {@link LedgerStore.claimSignal} answers. */
export type SignalClaim = "claimed" | "taken" | "delivered";

/*
 * The ledger's contract, in the parts its users need: admission and settlement use the budget
 * and reservation parts, stuck detection the episode part, signal delivery the signal part.
 * `LedgerStore` is all of them, and what a store implements (`SqliteStore`, `MemoryStore`, and
 * `PostgresStore`, shared across hosts). All methods are synchronous: the stores are (PostgreSQL
 * through a worker thread), and it keeps the atomic sections honest. Reports read through a `LedgerReader` (reader.ts) instead.
 */

/** What every part of the ledger has. */
export interface LedgerBase {
  /** A file path, ":memory:", or a database URL without its password (for logs). */
  readonly location: string;
  /**
   * Runs `fn` so that no other guard sharing the store interleaves its own atomic section
   * (SQLite: one `BEGIN IMMEDIATE` transaction). Nested calls join the outer section.
   */
  atomically<T>(fn: () => T): T;
}

/** Spend: the usage buckets behind the rolling windows, the decisions, and learned sizes. */
export interface BudgetLedger extends LedgerBase {
  /** Settled usage since `sinceMs` and open reservations, for one key or (null) for all keys. */
  scopeUsage(sessionKey: string | null, sinceMs: number): ScopeUsage;
  /**
   * Settled usage since `sinceMs` and open reservations of one judge kind, all keys together.
   * Optional for stores written before it existed: a guard with caps per judge kind needs it.
   */
  judgeUsage?(judge: string, sinceMs: number): ScopeUsage;
  /** Charges a key, everything, and (given) the judge kind the call was of. */
  addUsage(sessionKey: string, atMs: number, micros: number, calls: number, judge?: string): void;
  /** Records a decision; returns its id. */
  recordDecision(d: DecisionRecord): DecisionId;
  /** Rewrites a decision (a late settlement of a call charged at its estimate). */
  updateDecision(id: DecisionId, d: DecisionRecord): void;
  /**
   * Drops usage buckets that ended before `beforeMs`, and reservations charged at their
   * estimate before it (no settlement is coming for them any more).
   */
  pruneUsage(beforeMs: number): void;
  /**
   * The ledger's prune horizon: nothing older was pruned. Before the first prune, the oldest
   * usage bucket; null when there is none.
   */
  pruneHorizon(): number | null;
  setPruneHorizon(ms: number): void;
  estimateStats(): EstimateStats[];
  saveEstimateStats(s: EstimateStats): void;
}

/** Calls in flight: their reservations, and the guards (owners) that hold them. */
export interface ReservationLedger extends LedgerBase {
  openReservation(r: ReservationRecord): void;
  /** Removes a reservation; false when it was no longer there (reclaimed meanwhile). */
  deleteReservation(id: string): boolean;
  /** A reservation by id, open or charged at its estimate; undefined when unknown. */
  reservation(id: string): StoredReservation | undefined;
  /** Removes a reservation and returns it as it was (undefined when it was not there). */
  takeReservation(id: string): StoredReservation | undefined;
  /**
   * Reservations not charged yet whose owner is among `ownerIds` or has no owner row (orphans
   * included), for the reclaimer to settle.
   */
  deadReservations(ownerIds: readonly string[]): StoredReservation[];
  /** Marks a remote reservation as waiting for its settlement, its owner gone since `atMs`. */
  orphanReservation(id: string, atMs: number): void;
  /** Marks a reservation as charged at its estimate (see {@link StoredReservation.chargedMicros}). */
  markCharged(id: string, micros: number, decisionId: DecisionId, atMs: number): void;
  registerOwner(o: OwnerRecord): void;
  /** Refreshes an owner's heartbeat; false when its row is gone (it must register again). */
  heartbeat(ownerId: string, nowMs: number): boolean;
  removeOwner(ownerId: string): void;
  owners(): OwnerRecord[];
  /**
   * Liveness by lease, for a store shared across hosts (where a pid proves nothing and each
   * host's clocks differ): extends the owner's lease to the store's own now + `leaseMs`; false
   * when its row is gone. A store with `renewLease` and `expiredOwners` has owners watched by
   * lease alone; without them, by pid and heartbeat counter (owners.ts).
   */
  renewLease?(ownerId: string, leaseMs: number): boolean;
  /** Owners whose lease expired, by the store's own clock. */
  expiredOwners?(): string[];
  /**
   * Records the caps of a guard opening the store (unless the latest record says the same).
   * Optional for stores written before it existed.
   */
  recordConfig?(c: GuardConfigRecord): void;
}

/** Stuck state: each key's state, its episodes, and the registry of canned fingerprints. */
export interface EpisodeLedger extends LedgerBase {
  keyState(sessionKey: string): KeyStateRecord | undefined;
  saveKeyState(s: KeyStateRecord): void;
  openEpisode(e: EpisodeRecord): void;
  closeEpisode(id: string, endedMs: number): void;
  cannedFingerprints(): string[];
  addCannedFingerprint(fingerprint: string, source: "episode" | "operator", atMs: number): void;
  removeCannedFingerprint(fingerprint: string): void;
}

/** Signal deliveries, and the claims that make one process of those sharing the ledger send each. */
export interface SignalLedger extends LedgerBase {
  recordSignal(s: SignalRecord): void;
  /** Whether some channel has delivered this event (by any process sharing the ledger). */
  signalDelivered(eventId: string): boolean;
  /**
   * Claims the delivery of an event (a stuck episode or a budget alert) for the caller:
   * `claimed` unless it was delivered already or another claim on it is younger than
   * `retryAfterMs` (`taken`). Called inside the atomic section that opens the event, so that of
   * several processes seeing it at once exactly one sends it; a claim whose delivery never
   * completes (its process died) can be taken again once it is `retryAfterMs` old. Optional for
   * stores written before it existed (every call then claims).
   */
  claimSignal?(eventId: string, nowMs: number, retryAfterMs: number): SignalClaim;
  /** Every channel delivered the event: it is never claimed again. */
  completeSignal?(eventId: string, nowMs: number): void;
}

/**
 * Where the guard keeps what must survive a restart and be shared between processes: every
 * part above, and the store's own health. The SQLite ledger is the default; the in-memory store
 * serves tests and embedding.
 */
export interface LedgerStore extends BudgetLedger, ReservationLedger, EpisodeLedger, SignalLedger {
  /** Why the store cannot be used right now, if it can tell (its operations throw meanwhile). */
  readonly fault?: Error | undefined;
  /** Looks at the storage itself, on the guard's heartbeat, and recovers from a fault when it can. */
  check?(): LedgerCheck;
  /**
   * The store's own clock (a database's, shared by every host using it): the guard dates
   * windows, reservations and alerts on it unless it was given a clock of its own, so that a
   * host's wrong system clock cannot move budgets. Without it, the guard keeps its SteadyClock.
   */
  readonly clock?: Clock;
  close(): void;
}
