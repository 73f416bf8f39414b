import { bucketStart, DEFAULT_BUCKET_MS, judgeScope, scopeOf } from "./buckets.js";
import type { DecisionId } from "./decision-ids.js";
import { sameCaps } from "./guard-config.js";
import type {
  DecisionRecord,
  EpisodeRecord,
  EstimateStats,
  GuardConfigRecord,
  KeyStateRecord,
  LedgerStore,
  OwnerRecord,
  ReservationRecord,
  ScopeUsage,
  SignalClaim,
  SignalRecord,
  StoredReservation,
} from "./types.js";

type Held = { -readonly [K in keyof StoredReservation]: StoredReservation[K] } & { chargedMs: number | null };

interface Episode extends EpisodeRecord {
  endedMs: number | null;
}

/**
 * The ledger in process memory: same contract as the SQLite ledger, nothing survives the
 * process. Decisions (the latest 100,000, with their cost source and computed cost), episodes,
 * signals and guard configurations are kept so tests and embedders can inspect them. Its atomic sections need no lock (one thread) and never fail, so they have
 * nothing to roll back.
 */
export class MemoryStore implements LedgerStore {
  readonly location = ":memory:";
  readonly decisions: DecisionRecord[] = [];
  readonly signals: SignalRecord[] = [];
  /** Configurations of the guards that opened this store, in the order recorded. */
  readonly configs: GuardConfigRecord[] = [];
  readonly episodes = new Map<string, Episode>();
  readonly #usage = new Map<string, Map<number, { micros: number; calls: number }>>();
  readonly #reservations = new Map<string, Held>();
  /** Decisions by id, for a late settlement's rewrite (the latest ones only, as `decisions`). */
  readonly #byId = new Map<number, DecisionRecord>();
  #nextId = 1;
  #horizon: number | null = null;
  readonly #owners = new Map<string, OwnerRecord>();
  readonly #keys = new Map<string, KeyStateRecord>();
  readonly #canned = new Map<string, { source: string; firstMs: number }>();
  readonly #stats = new Map<string, EstimateStats>();
  readonly #claims = new Map<string, { claimedMs: number; delivered: boolean }>();
  readonly #bucketMs: number;

  readonly #maxDecisions: number;

  constructor(options: { bucketMs?: number; maxDecisions?: number } = {}) {
    this.#bucketMs = options.bucketMs ?? DEFAULT_BUCKET_MS;
    this.#maxDecisions = options.maxDecisions ?? 100_000;
  }

  atomically<T>(fn: () => T): T {
    return fn();
  }

  scopeUsage(sessionKey: string | null, sinceMs: number): ScopeUsage {
    return this.#scope(
      scopeOf(sessionKey),
      sinceMs,
      (r) => sessionKey === null || r.sessionKey === sessionKey,
    );
  }

  judgeUsage(judge: string, sinceMs: number): ScopeUsage {
    return this.#scope(judgeScope(judge), sinceMs, (r) => r.judge === judge);
  }

  #scope(scope: string, sinceMs: number, open: (r: Held) => boolean): ScopeUsage {
    let spentMicros = 0;
    let calls = 0;
    const buckets = this.#usage.get(scope);
    if (buckets) {
      for (const [start, b] of buckets) {
        if (start + this.#bucketMs > sinceMs) {
          spentMicros += b.micros;
          calls += b.calls;
        }
      }
    }
    let openCount = 0;
    let openExpectedMicros = 0;
    let openWorstMicros = 0;
    for (const r of this.#reservations.values()) {
      if (r.chargedMicros !== null || !open(r)) continue;
      openCount++;
      openExpectedMicros += r.expectedMicros;
      openWorstMicros += r.worstMicros;
    }
    return { spentMicros, calls, openCount, openExpectedMicros, openWorstMicros };
  }

  addUsage(sessionKey: string, atMs: number, micros: number, calls: number, judge?: string): void {
    const start = bucketStart(atMs, this.#bucketMs);
    const scopes = [scopeOf(sessionKey), scopeOf(null)];
    if (judge !== undefined) scopes.push(judgeScope(judge));
    for (const scope of scopes) {
      let buckets = this.#usage.get(scope);
      if (!buckets) {
        buckets = new Map();
        this.#usage.set(scope, buckets);
      }
      const b = buckets.get(start);
      if (b) {
        b.micros += micros;
        b.calls += calls;
      } else buckets.set(start, { micros, calls });
    }
  }

  openReservation(r: ReservationRecord): void {
    this.#reservations.set(r.id, {
      ...r,
      orphanedMs: null,
      chargedMicros: null,
      chargedMs: null,
      decisionId: null,
    });
  }

  deleteReservation(id: string): boolean {
    return this.#reservations.delete(id);
  }

  reservation(id: string): StoredReservation | undefined {
    const r = this.#reservations.get(id);
    return r === undefined ? undefined : { ...r };
  }

  takeReservation(id: string): StoredReservation | undefined {
    const r = this.reservation(id);
    this.#reservations.delete(id);
    return r;
  }

  deadReservations(ownerIds: readonly string[]): StoredReservation[] {
    const dead = new Set(ownerIds);
    return [...this.#reservations.values()]
      .filter(
        (r) =>
          r.chargedMicros === null &&
          (r.orphanedMs !== null || dead.has(r.ownerId) || !this.#owners.has(r.ownerId)),
      )
      .map((r) => ({ ...r }));
  }

  orphanReservation(id: string, atMs: number): void {
    const r = this.#reservations.get(id);
    if (r && r.orphanedMs === null && r.chargedMicros === null) r.orphanedMs = atMs;
  }

  markCharged(id: string, micros: number, decisionId: DecisionId, atMs: number): void {
    const r = this.#reservations.get(id);
    if (r === undefined) return;
    r.chargedMicros = micros;
    r.chargedMs = atMs;
    r.decisionId = decisionId;
  }

  /** Reservations currently open (for tests and diagnostics). */
  get openReservations(): number {
    let n = 0;
    for (const r of this.#reservations.values()) if (r.chargedMicros === null) n++;
    return n;
  }

  recordDecision(d: DecisionRecord): DecisionId {
    // The same fields as a ledger row: a source and a computed cost, null when not given.
    const row = { ...d, costSource: d.costSource ?? null, computedMicros: d.computedMicros ?? null };
    this.decisions.push(row);
    const id = this.#nextId++;
    this.#byId.set(id, row);
    // A long-running in-memory guard keeps the latest decisions only.
    if (this.decisions.length > this.#maxDecisions * 1.25) {
      const dropped = new Set(this.decisions.splice(0, this.decisions.length - this.#maxDecisions));
      for (const [k, v] of this.#byId) {
        if (!dropped.has(v)) break;
        this.#byId.delete(k);
      }
    }
    return id;
  }

  updateDecision(id: DecisionId, d: DecisionRecord): void {
    const row = this.#byId.get(Number(id));
    if (row === undefined) return;
    const at = this.decisions.indexOf(row);
    const next = {
      ...row,
      ...d,
      ts: row.ts,
      costSource: d.costSource ?? null,
      computedMicros: d.computedMicros ?? null,
    };
    this.#byId.set(Number(id), next);
    if (at >= 0) this.decisions[at] = next;
  }

  recordConfig(c: GuardConfigRecord): void {
    // Redundant when the configuration in force at its start already says the same.
    let atStart: GuardConfigRecord | undefined;
    for (const x of this.configs)
      if (x.startedMs <= c.startedMs && (!atStart || x.startedMs >= atStart.startedMs)) atStart = x;
    if (atStart === undefined || !sameCaps(atStart, c)) this.configs.push(c);
  }

  registerOwner(o: OwnerRecord): void {
    this.#owners.set(o.id, o);
  }

  heartbeat(ownerId: string, nowMs: number): boolean {
    const o = this.#owners.get(ownerId);
    if (o) this.#owners.set(ownerId, { ...o, heartbeatMs: nowMs, beat: (o.beat ?? 0) + 1 });
    return o !== undefined;
  }

  removeOwner(ownerId: string): void {
    this.#owners.delete(ownerId);
  }

  owners(): OwnerRecord[] {
    return [...this.#owners.values()];
  }

  pruneUsage(beforeMs: number): void {
    for (const buckets of this.#usage.values()) {
      for (const start of buckets.keys()) if (start + this.#bucketMs <= beforeMs) buckets.delete(start);
    }
    for (const [id, r] of this.#reservations)
      if (r.chargedMs !== null && r.chargedMs < beforeMs) this.#reservations.delete(id);
  }

  pruneHorizon(): number | null {
    if (this.#horizon !== null) return this.#horizon;
    let oldest: number | null = null;
    for (const buckets of this.#usage.values())
      for (const start of buckets.keys()) if (oldest === null || start < oldest) oldest = start;
    return oldest;
  }

  setPruneHorizon(ms: number): void {
    this.#horizon = this.#horizon === null ? ms : Math.max(this.#horizon, ms);
  }

  keyState(sessionKey: string): KeyStateRecord | undefined {
    return this.#keys.get(sessionKey);
  }

  saveKeyState(s: KeyStateRecord): void {
    this.#keys.set(s.sessionKey, s);
  }

  openEpisode(e: EpisodeRecord): void {
    // Opened once, as the ledger's other stores do: a second opening must not reopen it.
    if (!this.episodes.has(e.id)) this.episodes.set(e.id, { ...e, endedMs: null });
  }

  closeEpisode(id: string, endedMs: number): void {
    const e = this.episodes.get(id);
    if (e && e.endedMs === null) e.endedMs = endedMs;
  }

  cannedFingerprints(): string[] {
    return [...this.#canned.keys()];
  }

  addCannedFingerprint(fingerprint: string, source: "episode" | "operator", atMs: number): void {
    if (!this.#canned.has(fingerprint)) this.#canned.set(fingerprint, { source, firstMs: atMs });
  }

  removeCannedFingerprint(fingerprint: string): void {
    this.#canned.delete(fingerprint);
  }

  recordSignal(s: SignalRecord): void {
    this.signals.push(s);
  }

  signalDelivered(eventId: string): boolean {
    return this.signals.some((s) => s.eventId === eventId && s.status === "delivered");
  }

  claimSignal(eventId: string, nowMs: number, retryAfterMs: number): SignalClaim {
    const claim = this.#claims.get(eventId);
    if (claim?.delivered || (claim === undefined && this.signalDelivered(eventId))) return "delivered";
    if (claim !== undefined && nowMs - claim.claimedMs < retryAfterMs) return "taken";
    this.#claims.set(eventId, { claimedMs: nowMs, delivered: false });
    return "claimed";
  }

  completeSignal(eventId: string, nowMs: number): void {
    this.#claims.set(eventId, { claimedMs: this.#claims.get(eventId)?.claimedMs ?? nowMs, delivered: true });
  }

  estimateStats(): EstimateStats[] {
    return [...this.#stats.values()];
  }

  saveEstimateStats(s: EstimateStats): void {
    this.#stats.set(`${s.judge}\u0000${s.model}`, s);
  }

  close(): void {}
}
