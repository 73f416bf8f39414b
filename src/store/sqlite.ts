import { randomInt } from "node:crypto";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type Database from "better-sqlite3";
import type { ScopeUsage } from "../budget/admission.js";
import type { EstimateStats } from "../budget/estimator.js";
import type { StuckEvidence } from "../detection/evidence.js";
import { parseTrail } from "../detection/window.js";
import { LedgerSchemaError } from "../errors.js";
import { bucketStart, DEFAULT_BUCKET_MS, scopeOf } from "./buckets.js";
import { type Checkpointer, startCheckpointer } from "./checkpointer.js";
import { addToId, DECISION_ID_SLOTS, type DecisionId, firstDecisionId } from "./decision-ids.js";
import { sqlite } from "./driver.js";
import { applyMigration, ledgerProblem, SCHEMA_VERSION } from "./migrations.js";
import type {
  DecisionRecord,
  EpisodeRecord,
  GuardConfigRecord,
  KeyStateRecord,
  LedgerStore,
  OwnerRecord,
  ReservationRecord,
  SignalClaim,
  SignalRecord,
} from "./types.js";

export interface SqliteStoreOptions {
  /** How long a write waits for another process's lock before failing. @default 5000 */
  readonly busyTimeoutMs?: number;
  /** Width of the spend buckets behind rolling windows. @default 60000 */
  readonly bucketMs?: number;
  /**
   * Run WAL checkpoints on a worker thread instead of inside whichever commit crosses the
   * automatic threshold (see `checkpointer.ts`). @default true for files
   */
  readonly backgroundCheckpoints?: boolean;
  /** How often the worker checkpoints. @default 250 */
  readonly checkpointIntervalMs?: number;
  /**
   * WAL length (pages) past which a commit checkpoints inline, so that the WAL is bounded when
   * writes never pause long enough for the worker's passive checkpoints to catch up (a writer
   * starts the WAL over only once everything in it has been copied). @default 16384 (64 MiB)
   */
  readonly walLimitPages?: number;
}

type Row = Record<string, unknown>;

/**
 * The ledger in one SQLite file (WAL, short transactions, a busy timeout), shared safely by
 * several processes on one host. The file and its WAL are created mode 0600.
 */
export class SqliteStore implements LedgerStore {
  readonly location: string;
  readonly db: Database.Database;
  readonly #bucketMs: number;
  readonly #s: ReturnType<typeof prepare>;
  readonly #checkpointer: Checkpointer | undefined;
  /** Where this process starts looking for a free decision id within a millisecond. */
  #slot = randomInt(DECISION_ID_SLOTS);
  #crowded: { first: DecisionId; next: DecisionId } | undefined;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.location = path;
    this.#bucketMs = options.bucketMs ?? DEFAULT_BUCKET_MS;
    if (path !== ":memory:") createPrivateFile(path);
    try {
      this.db = new (sqlite())(path);
    } catch (e) {
      const folder = path !== ":memory:" && statSync(path, { throwIfNoEntry: false })?.isDirectory();
      throw new LedgerSchemaError(
        `cannot open the ledger ${path}: ${folder ? "it is a folder" : (e as Error).message}; give --db (or JUDGE_GUARD_DB) the path of a ledger file`,
      );
    }
    try {
      this.db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`);
      // Before anything is written: not even the journal mode of a foreign file may change.
      const problem = ledgerProblem(this.db, path);
      if (problem !== null) throw new LedgerSchemaError(problem);
      if (path !== ":memory:") enableWal(this.db);
      this.db.pragma("synchronous = NORMAL");
      migrate(this.db);
      this.#s = prepare(this.db);
    } catch (e) {
      this.db.close();
      if ((e as { code?: string }).code === "SQLITE_NOTADB") {
        throw new LedgerSchemaError(
          `${path} is not a judge-guard ledger (SQLite: ${(e as Error).message}): give --db (or JUDGE_GUARD_DB) a new file or an existing ledger`,
        );
      }
      throw e;
    }
    if (path !== ":memory:" && options.backgroundCheckpoints !== false) {
      this.db.pragma(`wal_autocheckpoint = ${Math.trunc(options.walLimitPages ?? 16384)}`);
      this.#checkpointer = startCheckpointer(path, options.checkpointIntervalMs ?? 250, (message) => {
        // Without the worker, commits checkpoint inline at SQLite's usual threshold.
        this.checkpointError = message;
        if (this.db.open) this.db.pragma("wal_autocheckpoint = 1000");
      });
    }
  }

  /** The last error of the background checkpointer, if it failed (checkpoints are then inline). */
  checkpointError: string | undefined;

  atomically<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    this.#s.begin.run();
    try {
      const out = fn();
      this.#s.commit.run();
      return out;
    } catch (e) {
      if (this.db.inTransaction) this.#s.rollback.run();
      throw e;
    }
  }

  scopeUsage(sessionKey: string | null, sinceMs: number): ScopeUsage {
    const u = this.#s.usage.get(scopeOf(sessionKey), sinceMs - this.#bucketMs) as Row;
    const r = (sessionKey === null ? this.#s.openAll.get() : this.#s.openKey.get(sessionKey)) as Row;
    return {
      spentMicros: Number(u.m),
      calls: Number(u.c),
      openCount: Number(r.n),
      openExpectedMicros: Number(r.e),
      openWorstMicros: Number(r.w),
    };
  }

  addUsage(sessionKey: string, atMs: number, micros: number, calls: number): void {
    const b = bucketStart(atMs, this.#bucketMs);
    this.#s.addUsage.run(scopeOf(sessionKey), b, micros, calls);
    this.#s.addUsage.run(scopeOf(null), b, micros, calls);
  }

  openReservation(r: ReservationRecord): void {
    this.#s.openReservation.run(
      r.id,
      r.ownerId,
      r.sessionKey,
      r.judge,
      r.model,
      r.expectedMicros,
      r.worstMicros,
      r.createdMs,
    );
  }

  deleteReservation(id: string): boolean {
    // The table holds the calls in flight only: a scan is as quick as an index would be.
    return this.#s.deleteReservation.run(id).changes > 0;
  }

  recordDecision(d: DecisionRecord): void {
    const first = firstDecisionId(d.ts);
    let id = addToId(first, this.#slot++ % DECISION_ID_SLOTS);
    // A millisecond this process found crowded (a replay on a fixed clock): start past what it
    // filled, so that the n-th decision in it does not walk the n-1 before it.
    const crowded = this.#crowded;
    if (crowded !== undefined && crowded.first === first && crowded.next > id) id = crowded.next;
    let taken = false;
    for (;;) {
      try {
        this.#insertDecision(id, d);
        if (taken || crowded?.first === first) this.#crowded = { first, next: addToId(id, 1) };
        return;
      } catch (e) {
        // Taken (by another process in the same millisecond, or a crowded one): the first free
        // id after it is as good.
        if ((e as { code?: string }).code !== "SQLITE_CONSTRAINT_PRIMARYKEY") throw e;
        taken = true;
        const free = (this.#s.freeDecisionId.get(id) as { id: bigint }).id;
        id = free <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(free) : free;
      }
    }
  }

  #insertDecision(id: DecisionId, d: DecisionRecord): void {
    this.#s.decision.run(
      id,
      d.ts,
      d.sessionKey,
      d.judge,
      d.model,
      d.decision,
      d.reason,
      d.shadow ? 1 : 0,
      d.reservedMicros,
      d.chargedMicros,
      d.savedMicros,
      d.inputTokens,
      d.outputTokens,
      d.cacheReadTokens,
      d.cacheWriteTokens,
      d.turns,
      d.transcriptChars,
      d.transcriptHash,
      d.durationMs,
      d.episodeId,
      d.costSource ?? null,
      d.computedMicros ?? null,
    );
  }

  recordConfig(c: GuardConfigRecord): void {
    this.atomically(() => {
      // Redundant when the configuration in force at its start already says the same.
      const latest = this.#s.configAt.get(c.startedMs) as Row | undefined;
      const same =
        latest !== undefined &&
        latest.mode === c.mode &&
        latest.session_budget_micros === c.sessionBudgetMicros &&
        latest.session_max_calls === c.sessionMaxCalls &&
        latest.budget_window_ms === c.budgetWindowMs &&
        latest.daily_budget_micros === c.dailyBudgetMicros;
      if (same) return;
      this.#s.config.run(
        c.startedMs,
        c.ownerId,
        c.mode,
        c.sessionBudgetMicros,
        c.sessionMaxCalls,
        c.budgetWindowMs,
        c.dailyBudgetMicros,
      );
    });
  }

  /** Recorded guard configurations, oldest first (for reports and tests). */
  configs(): GuardConfigRecord[] {
    return (this.#s.configs.all() as Row[]).map((r) => ({
      startedMs: Number(r.started_ms),
      ownerId: String(r.owner_id),
      mode: String(r.mode),
      sessionBudgetMicros: r.session_budget_micros === null ? null : Number(r.session_budget_micros),
      sessionMaxCalls: r.session_max_calls === null ? null : Number(r.session_max_calls),
      budgetWindowMs: Number(r.budget_window_ms),
      dailyBudgetMicros: r.daily_budget_micros === null ? null : Number(r.daily_budget_micros),
    }));
  }

  registerOwner(o: OwnerRecord): void {
    this.#s.owner.run(o.id, o.pid, o.hostname, o.procStart, o.startedMs, o.heartbeatMs);
  }

  heartbeat(ownerId: string, nowMs: number): boolean {
    return this.#s.heartbeat.run(nowMs, ownerId).changes > 0;
  }

  removeOwner(ownerId: string): void {
    this.#s.removeOwner.run(ownerId);
  }

  owners(): OwnerRecord[] {
    return (this.#s.owners.all() as Row[]).map((r) => ({
      id: String(r.id),
      pid: Number(r.pid),
      hostname: String(r.hostname),
      procStart: r.proc_start === null ? null : String(r.proc_start),
      startedMs: Number(r.started_ms),
      heartbeatMs: Number(r.heartbeat_ms),
    }));
  }

  reclaimReservations(ownerIds: readonly string[]): number {
    return this.atomically(() => {
      let n = 0;
      for (const id of ownerIds) {
        n += this.#s.reclaimOwner.run(id).changes;
        this.#s.removeOwner.run(id);
      }
      n += this.#s.reclaimOrphans.run().changes;
      return n;
    });
  }

  pruneUsage(beforeMs: number): void {
    this.#s.prune.run(beforeMs - this.#bucketMs);
  }

  keyState(sessionKey: string): KeyStateRecord | undefined {
    const r = this.#s.keyState.get(sessionKey) as Row | undefined;
    if (r === undefined) return undefined;
    return {
      sessionKey,
      stuck: r.stuck === 1,
      episodeId: r.episode_id === null ? null : String(r.episode_id),
      fingerprint: r.fingerprint === null ? null : String(r.fingerprint),
      repeats: Number(r.repeats),
      lastSignalMs: r.last_signal_ms === null ? null : Number(r.last_signal_ms),
      signalled: r.signalled === 1,
      updatedMs: Number(r.updated_ms),
    };
  }

  saveKeyState(s: KeyStateRecord): void {
    this.#s.saveKeyState.run(
      s.sessionKey,
      s.stuck ? 1 : 0,
      s.episodeId,
      s.fingerprint,
      s.repeats,
      s.lastSignalMs,
      s.signalled ? 1 : 0,
      s.updatedMs,
    );
  }

  openEpisode(e: EpisodeRecord): void {
    this.#s.openEpisode.run(
      e.id,
      e.sessionKey,
      e.fingerprint,
      e.evidence,
      e.repeats,
      e.detectedTurn,
      e.startedMs,
      e.trail === undefined ? null : JSON.stringify(e.trail),
    );
  }

  closeEpisode(id: string, endedMs: number): void {
    this.#s.closeEpisode.run(endedMs, id);
  }

  /** Episodes, newest first (for reports and tests). */
  episodes(): Array<EpisodeRecord & { endedMs: number | null }> {
    return (this.#s.episodes.all() as Row[]).map((r) => ({
      id: String(r.id),
      sessionKey: String(r.session_key),
      fingerprint: String(r.fingerprint),
      evidence: String(r.evidence) as StuckEvidence,
      repeats: Number(r.repeats),
      detectedTurn: Number(r.detected_turn),
      startedMs: Number(r.started_ms),
      endedMs: r.ended_ms === null ? null : Number(r.ended_ms),
      ...(r.trail == null ? {} : { trail: parseTrail(r.trail) ?? undefined }),
    }));
  }

  cannedFingerprints(): string[] {
    return (this.#s.canned.all() as Row[]).map((r) => String(r.fingerprint));
  }

  addCannedFingerprint(fingerprint: string, source: "episode" | "operator", atMs: number): void {
    this.#s.addCanned.run(fingerprint, source, atMs);
  }

  removeCannedFingerprint(fingerprint: string): void {
    this.#s.removeCanned.run(fingerprint);
  }

  recordSignal(s: SignalRecord): void {
    this.#s.signal.run(
      s.ts,
      s.eventId,
      s.episodeId,
      s.sessionKey,
      s.channel,
      s.event,
      s.status,
      s.attempts,
      s.error,
    );
  }

  signalDelivered(eventId: string): boolean {
    return this.#s.delivered.get(eventId) !== undefined;
  }

  claimSignal(eventId: string, nowMs: number, retryAfterMs: number): SignalClaim {
    return this.atomically(() => {
      const claim = this.#s.claim.get(eventId) as Row | undefined;
      // Without a claim row, a delivery recorded before claims existed (schema v5) still counts.
      if (claim?.delivered === 1 || (claim === undefined && this.signalDelivered(eventId)))
        return "delivered";
      if (claim !== undefined && nowMs - Number(claim.claimed_ms) < retryAfterMs) return "taken";
      this.#s.setClaim.run(eventId, nowMs);
      return "claimed";
    });
  }

  completeSignal(eventId: string, nowMs: number): void {
    this.#s.completeClaim.run(eventId, nowMs);
  }

  estimateStats(): EstimateStats[] {
    return (this.#s.estimates.all() as Row[]).map((r) => ({
      judge: String(r.judge),
      model: String(r.model),
      samples: Number(r.samples),
      outputMean: Number(r.output_mean),
      outputVar: Number(r.output_var),
      outputMax: Number(r.output_max),
      inputRatio: Number(r.input_ratio),
      inputRatioMax: Number(r.input_ratio_max),
    }));
  }

  saveEstimateStats(s: EstimateStats): void {
    this.#s.saveEstimate.run(
      s.judge,
      s.model,
      s.samples,
      s.outputMean,
      s.outputVar,
      s.outputMax,
      s.inputRatio,
      s.inputRatioMax,
    );
  }

  close(): void {
    void this.#checkpointer?.stop();
    if (this.db.open) this.db.close();
  }
}

/** Creates the file (and its folder) readable by its owner only, before SQLite opens it. */
function createPrivateFile(path: string): void {
  if (existsSync(path)) return;
  mkdirSync(dirname(path), { recursive: true });
  closeSync(openSync(path, "a", 0o600));
  chmodSync(path, 0o600);
}

/**
 * Switches a new file to WAL. Several processes opening a new ledger at once race for this
 * switch, and SQLite answers the loser SQLITE_BUSY at once, without waiting the busy timeout:
 * wait a little and look again (the winner has usually switched it meanwhile).
 */
function enableWal(db: Database.Database): void {
  for (let attempt = 1; ; attempt++) {
    try {
      if (db.pragma("journal_mode", { simple: true }) !== "wal") db.pragma("journal_mode = WAL");
      return;
    } catch (e) {
      if ((e as { code?: string }).code !== "SQLITE_BUSY" || attempt >= 50) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10 * attempt);
    }
  }
}

function migrate(db: Database.Database): void {
  const version = Number(db.pragma("user_version", { simple: true }));
  if (version === SCHEMA_VERSION) return;
  db.transaction(() => {
    // Re-read inside the write lock: another process may have migrated meanwhile.
    const current = Number(db.pragma("user_version", { simple: true }));
    for (let v = current; v < SCHEMA_VERSION; v++) applyMigration(db, v);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

function prepare(db: Database.Database) {
  return {
    begin: db.prepare("BEGIN IMMEDIATE"),
    commit: db.prepare("COMMIT"),
    rollback: db.prepare("ROLLBACK"),
    usage: db.prepare(
      "SELECT coalesce(sum(micros), 0) AS m, coalesce(sum(calls), 0) AS c FROM usage WHERE scope = ? AND bucket > ?",
    ),
    openKey: db.prepare(
      "SELECT count(*) AS n, coalesce(sum(expected_micros), 0) AS e, coalesce(sum(worst_micros), 0) AS w FROM reservations WHERE session_key = ?",
    ),
    openAll: db.prepare(
      "SELECT count(*) AS n, coalesce(sum(expected_micros), 0) AS e, coalesce(sum(worst_micros), 0) AS w FROM reservations",
    ),
    addUsage: db.prepare(
      "INSERT INTO usage (scope, bucket, micros, calls) VALUES (?, ?, ?, ?) ON CONFLICT (scope, bucket) DO UPDATE SET micros = micros + excluded.micros, calls = calls + excluded.calls",
    ),
    prune: db.prepare("DELETE FROM usage WHERE bucket <= ?"),
    openReservation: db.prepare(
      "INSERT INTO reservations (ref, owner_id, session_key, judge, model, expected_micros, worst_micros, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    deleteReservation: db.prepare("DELETE FROM reservations WHERE ref = ?"),
    freeDecisionId: db
      .prepare(
        "SELECT min(id) + 1 AS id FROM decisions AS d WHERE id >= ? AND NOT EXISTS (SELECT 1 FROM decisions WHERE id = d.id + 1)",
      )
      .safeIntegers(true),
    reclaimOwner: db.prepare("DELETE FROM reservations WHERE owner_id = ?"),
    reclaimOrphans: db.prepare("DELETE FROM reservations WHERE owner_id NOT IN (SELECT id FROM owners)"),
    decision: db.prepare(
      `INSERT INTO decisions (id, ts, session_key, judge, model, decision, reason, shadow, reserved_micros, charged_micros,
        saved_micros, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, turns, transcript_chars,
        transcript_hash, duration_ms, episode_id, cost_source, computed_micros)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    configAt: db.prepare(
      "SELECT * FROM guard_config WHERE started_ms <= ? ORDER BY started_ms DESC, id DESC LIMIT 1",
    ),
    configs: db.prepare("SELECT * FROM guard_config ORDER BY started_ms, id"),
    config: db.prepare(
      `INSERT INTO guard_config (started_ms, owner_id, mode, session_budget_micros, session_max_calls,
        budget_window_ms, daily_budget_micros) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    owner: db.prepare(
      "INSERT OR REPLACE INTO owners (id, pid, hostname, proc_start, started_ms, heartbeat_ms) VALUES (?, ?, ?, ?, ?, ?)",
    ),
    heartbeat: db.prepare("UPDATE owners SET heartbeat_ms = ? WHERE id = ?"),
    removeOwner: db.prepare("DELETE FROM owners WHERE id = ?"),
    owners: db.prepare("SELECT * FROM owners"),
    keyState: db.prepare("SELECT * FROM key_state WHERE session_key = ?"),
    saveKeyState: db.prepare(
      "INSERT OR REPLACE INTO key_state (session_key, stuck, episode_id, fingerprint, repeats, last_signal_ms, signalled, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    openEpisode: db.prepare(
      "INSERT OR IGNORE INTO episodes (id, session_key, fingerprint, evidence, repeats, detected_turn, started_ms, trail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    closeEpisode: db.prepare("UPDATE episodes SET ended_ms = ? WHERE id = ? AND ended_ms IS NULL"),
    episodes: db.prepare("SELECT * FROM episodes ORDER BY started_ms DESC"),
    canned: db.prepare("SELECT fingerprint FROM canned_fingerprints"),
    addCanned: db.prepare(
      "INSERT OR IGNORE INTO canned_fingerprints (fingerprint, source, first_seen_ms) VALUES (?, ?, ?)",
    ),
    removeCanned: db.prepare("DELETE FROM canned_fingerprints WHERE fingerprint = ?"),
    signal: db.prepare(
      "INSERT INTO signals (ts, event_id, episode_id, session_key, channel, event, status, attempts, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    claim: db.prepare("SELECT claimed_ms, delivered FROM signal_claims WHERE event_id = ?"),
    setClaim: db.prepare(
      "INSERT INTO signal_claims (event_id, claimed_ms) VALUES (?, ?) ON CONFLICT (event_id) DO UPDATE SET claimed_ms = excluded.claimed_ms",
    ),
    completeClaim: db.prepare(
      "INSERT INTO signal_claims (event_id, claimed_ms, delivered) VALUES (?, ?, 1) ON CONFLICT (event_id) DO UPDATE SET delivered = 1",
    ),
    estimates: db.prepare("SELECT * FROM estimates"),
    delivered: db.prepare("SELECT 1 FROM signals WHERE event_id = ? AND status = 'delivered' LIMIT 1"),
    saveEstimate: db.prepare(
      "INSERT OR REPLACE INTO estimates (judge, model, samples, output_mean, output_var, output_max, input_ratio, input_ratio_max) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ),
  };
}
