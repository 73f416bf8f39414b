import { randomInt } from "node:crypto";
import type { StuckEvidence } from "../detection/evidence.js";
import { parseTrail } from "../detection/window.js";
import { isJudgeGuardError, LedgerFaultError } from "../errors.js";
import type { Clock } from "../util/clock.js";
import { bucketStart, DEFAULT_BUCKET_MS, judgeScope, scopeOf } from "./buckets.js";
import { addToId, DECISION_ID_SLOTS, type DecisionId, firstDecisionId } from "./decision-ids.js";
import { judgeBudgetsText, sameCaps } from "./guard-config.js";
import {
  DEFAULT_LOCK_TIMEOUT_MS,
  PgConnection,
  type PgConnectionOptions,
  redactIn,
  redactUrl,
} from "./postgres-connection.js";
import { migratePostgres, PG_SCHEMA as S, SECTION_LOCK } from "./postgres-migrations.js";
import { configOf, idOf, num, numOrNull, type Row, reservationOf } from "./rows.js";
import type {
  DecisionRecord,
  EpisodeRecord,
  EstimateStats,
  GuardConfigRecord,
  KeyStateRecord,
  LedgerCheck,
  LedgerStore,
  OwnerRecord,
  ReservationRecord,
  ScopeUsage,
  SignalClaim,
  SignalRecord,
  StoredReservation,
} from "./types.js";

export interface PostgresStoreOptions extends PgConnectionOptions {
  /** Width of the spend buckets behind rolling windows. @default 60000 */
  readonly bucketMs?: number;
  /**
   * When the database cannot be reached or used at construction (down, unreachable, wrong
   * password): `"throw"` its {@link LedgerFaultError}, or `"retry"`: construct the store
   * unavailable and try again at each {@link PostgresStore.check}. A newer schema, or a
   * `judge_guard` schema that is no ledger, always throws a `LedgerSchemaError`. @default "throw"
   */
  readonly whenUnavailable?: "throw" | "retry";
}

/** Times are whole milliseconds in the database (decision ids start with the floor of theirs). */
const ms = (t: number): number => Math.floor(t);
const idParam = (id: DecisionId): string => String(id);

/** SQLSTATE classes and driver errors that mean the database cannot be reached or used. */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "57P01", // admin_shutdown (a restart)
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up)
  "53300", // too_many_connections
  "3D000", // the database does not exist
]);
const LOST =
  /Connection terminated|connection error|Connection is closed|timeout exceeded when trying to connect|terminating connection|not queryable/i;

/**
 * After a fault, a call (outside any section) tries the connection again once this long has
 * passed, then twice as long after each failure, up to {@link RETRY_MAX_MS}, and never sooner
 * than four times what the last attempt took (a server that does not answer costs the guard's
 * thread up to `connectTimeoutMs` per attempt). The heartbeat's `check()` tries as well.
 */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5000;

/**
 * The database's clock as the guard's budgets need it: read from PostgreSQL (`clock_timestamp()`)
 * when the store connects and again on every heartbeat, and carried forward between readings by
 * this process's monotonic clock, never backwards. Every host of a fleet then dates charges,
 * windows and reservations on one clock, whatever its own system clock says.
 */
export class DatabaseClock implements Clock {
  // Until the database first answers (a store constructed unavailable), this host's clock.
  #anchorDb = Date.now();
  #anchorMono = performance.now();
  #last = Number.NEGATIVE_INFINITY;
  #anchored = false;

  /**
   * Adopts a reading of the database's clock taken at `mono` (this process's monotonic clock).
   * The first reading replaces the host's clock outright, backwards too: a host whose clock runs
   * hours ahead and that started while the database was away must not keep its own time (its
   * windows would not see the fleet's recent spend); from then on the clock never goes back.
   */
  anchor(dbMs: number, mono: number): void {
    this.#anchorDb = dbMs;
    this.#anchorMono = mono;
    if (!this.#anchored) {
      this.#anchored = true;
      this.#last = Number.NEGATIVE_INFINITY;
    }
  }

  now(): number {
    const t = Math.round(this.#anchorDb + (performance.now() - this.#anchorMono));
    if (t > this.#last) this.#last = t;
    return this.#last;
  }

  /** How far this host's system clock is from the database's: positive when it runs ahead. */
  skew(): number {
    return Date.now() - this.now();
  }
}

/**
 * The ledger in a PostgreSQL database, shared by every guard of a fleet: the same contract as
 * the SQLite ledger, across hosts. Atomic sections are transactions (READ COMMITTED) that first
 * take one transaction-level advisory lock, so that they run one at a time across every host,
 * as BEGIN IMMEDIATE makes them on one SQLite file; writes to spend and reservations made
 * outside a section take it too. Liveness is a lease on the database's clock, and the store's
 * {@link clock} is the database's. See docs/postgres.md for why this is correct and what it costs.
 *
 * A lost connection or an unreachable server makes operations throw a {@link LedgerFaultError}
 * (the password never shows in it); {@link check}, on the guard's heartbeat, recovers.
 */
export class PostgresStore implements LedgerStore {
  /** The URL with its password replaced by `***`. */
  readonly location: string;
  /** The database's clock: the guard's windows and times use it when no clock is given. */
  readonly clock = new DatabaseClock();
  /** How long a section waits for the ledger's lock (held by another host's section) before failing. */
  readonly lockTimeoutMs: number;
  readonly #url: string;
  readonly #o: PostgresStoreOptions;
  readonly #bucketMs: number;
  #c: PgConnection | undefined;
  #fault: LedgerFaultError | undefined;
  #closed = false;
  /** When a call may next try to reconnect (performance.now()), and the back-off after that. */
  #retryAt = 0;
  #retryDelay = RETRY_FIRST_MS;
  /** A call reconnected since the last `check()`, which reports it. */
  #recovered = false;
  #depth = 0;
  #slot = randomInt(DECISION_ID_SLOTS);

  constructor(url: string, options: PostgresStoreOptions = {}) {
    this.#url = url;
    this.location = redactUrl(url);
    this.#o = options;
    this.#bucketMs = options.bucketMs ?? DEFAULT_BUCKET_MS;
    this.lockTimeoutMs = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    try {
      this.#c = this.#connect();
    } catch (e) {
      if (!(e instanceof LedgerFaultError) || options.whenUnavailable !== "retry") throw e;
      this.#setFault(e);
    }
  }

  get fault(): LedgerFaultError | undefined {
    return this.#fault;
  }

  #connect(): PgConnection {
    const c = new PgConnection(this.#url, this.#o);
    try {
      migratePostgres(c, this.location);
      this.#anchorClock(c);
      return c;
    } catch (e) {
      c.close();
      throw this.#faultOf(e) ?? e;
    }
  }

  /** Reads the database's clock; the reading is dated halfway through its round trip. */
  #anchorClock(c: PgConnection): void {
    const before = performance.now();
    const r = c.query("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now").rows[0]!;
    const after = performance.now();
    this.clock.anchor(Number(r.now), (before + after) / 2);
  }

  /** The fault an error means (the database cannot be reached or used), or undefined if it passes. */
  #faultOf(e: unknown): LedgerFaultError | undefined {
    if (isJudgeGuardError(e)) return e instanceof LedgerFaultError ? e : undefined;
    const code = String((e as { code?: unknown })?.code ?? "");
    const message = redactIn((e as Error)?.message ?? String(e), this.#url);
    const where = `the PostgreSQL ledger ${this.location}`;
    const cause = new Error(message);
    if (code === "28P01" || code === "28000")
      return new LedgerFaultError(
        this.location,
        "cannot-open",
        `${where} refused the connection (${message}): check the user and password in JUDGE_GUARD_DB (--db)`,
        { cause },
      );
    if (code === "42501")
      return new LedgerFaultError(
        this.location,
        "cannot-open",
        `${where} refused an operation (${message}): the user in JUDGE_GUARD_DB (--db) needs CREATE on the database for the first start, which creates the schema judge_guard, and then USAGE on that schema and read and write on its tables (docs/postgres.md)`,
        { cause },
      );
    if (code.startsWith("08") || UNREACHABLE.has(code) || LOST.test(message))
      return new LedgerFaultError(
        this.location,
        "cannot-open",
        `${where} cannot be reached (${message}${code && !message.includes(code) ? `, ${code}` : ""}): check that the server is up and that JUDGE_GUARD_DB (--db) names it; the guard tries again on its heartbeat`,
        { cause },
      );
    return undefined;
  }

  /** Marks the store unavailable; the first fault is kept, and calls try again after a back-off. */
  #setFault(fault: LedgerFaultError): void {
    if (this.#fault !== undefined) return;
    this.#fault = fault;
    this.#retryDelay = RETRY_FIRST_MS;
    this.#retryAt = performance.now() + RETRY_FIRST_MS;
  }

  /** Marks the store unavailable when `e` means so; returns what to throw (never the password). */
  #failed(e: unknown): unknown {
    const fault = this.#faultOf(e);
    if (fault !== undefined) {
      this.#setFault(fault);
      return this.#fault;
    }
    if (isJudgeGuardError(e)) return e;
    const err = new Error(
      `the PostgreSQL ledger ${this.location}: ${redactIn((e as Error)?.message ?? String(e), this.#url)}`,
    );
    (err as Error & { code?: unknown }).code = (e as { code?: unknown })?.code;
    return err;
  }

  /**
   * The connection, or the fault. A call outside any section whose back-off has passed tries to
   * reconnect first; never inside a section, whose transaction went with the lost connection.
   */
  #live(): PgConnection {
    if (this.#fault !== undefined && this.#depth === 0 && !this.#closed && performance.now() >= this.#retryAt)
      this.#recovered = this.#reconnect() || this.#recovered;
    if (this.#fault !== undefined) throw this.#fault;
    return this.#c!;
  }

  /** Connects anew (migrating, reading the clock) and replaces the lost connection: whether it did. */
  #reconnect(): boolean {
    const started = performance.now();
    try {
      const c = this.#connect();
      this.#c?.close();
      this.#c = c;
      this.#fault = undefined;
      return true;
    } catch (e) {
      // A fault replaces the one kept (it says what is wrong now); any other error keeps it.
      const fault = this.#faultOf(e);
      if (fault !== undefined) this.#fault = fault;
      const now = performance.now();
      this.#retryAt = now + Math.max(this.#retryDelay, 4 * (now - started));
      this.#retryDelay = Math.min(2 * this.#retryDelay, RETRY_MAX_MS);
      return false;
    }
  }

  #q(sql: string, params: readonly unknown[] = []): Row[] {
    const c = this.#live();
    try {
      return c.query(sql, params).rows;
    } catch (e) {
      throw this.#failed(e);
    }
  }

  #run(sql: string, params: readonly unknown[] = []): number {
    const c = this.#live();
    try {
      return c.query(sql, params).rowCount;
    } catch (e) {
      throw this.#failed(e);
    }
  }

  check(): LedgerCheck {
    if (this.#closed) return { fault: this.#fault! };
    if (this.#fault === undefined) {
      try {
        this.#anchorClock(this.#c!);
        if (!this.#recovered) return {};
        this.#recovered = false;
        return { recovered: "reconnected to the database" };
      } catch (e) {
        const fault = this.#faultOf(e);
        if (fault === undefined) return {};
        this.#setFault(fault);
      }
    }
    if (!this.#reconnect()) return { fault: this.#fault! };
    this.#recovered = false;
    return { recovered: "reconnected to the database" };
  }

  atomically<T>(fn: () => T): T {
    if (this.#depth > 0) return fn();
    const c = this.#live();
    try {
      c.begin(SECTION_LOCK);
    } catch (e) {
      throw this.#failed(e);
    }
    this.#depth++;
    try {
      const out = fn();
      try {
        c.commit();
      } catch (e) {
        throw this.#failed(e);
      }
      return out;
    } catch (e) {
      if (c.inTransaction) c.rollback();
      throw e;
    } finally {
      this.#depth--;
    }
  }

  scopeUsage(sessionKey: string | null, sinceMs: number): ScopeUsage {
    return sessionKey === null
      ? this.#usage(scopeOf(null), sinceMs, "true", [])
      : this.#usage(scopeOf(sessionKey), sinceMs, "session_key = $3", [sessionKey]);
  }

  judgeUsage(judge: string, sinceMs: number): ScopeUsage {
    return this.#usage(judgeScope(judge), sinceMs, "judge = $3", [judge]);
  }

  /** A scope's settled usage since `sinceMs` and the open reservations `open` selects: one round trip. */
  #usage(scope: string, sinceMs: number, open: string, args: readonly unknown[]): ScopeUsage {
    const r = this.#q(
      `SELECT u.m, u.c, o.n, o.e, o.w FROM
         (SELECT coalesce(sum(micros), 0) AS m, coalesce(sum(calls), 0) AS c FROM ${S}.usage WHERE scope = $1 AND bucket > $2) u,
         (SELECT ${OPEN_SUMS} FROM ${S}.reservations WHERE charged_micros IS NULL AND ${open}) o`,
      [scope, ms(sinceMs) - this.#bucketMs, ...args],
    )[0]!;
    return {
      spentMicros: num(r.m),
      calls: num(r.c),
      openCount: num(r.n),
      openExpectedMicros: num(r.e),
      openWorstMicros: num(r.w),
    };
  }

  addUsage(sessionKey: string, atMs: number, micros: number, calls: number, judge?: string): void {
    const bucket = bucketStart(ms(atMs), this.#bucketMs);
    const scopes = [scopeOf(sessionKey), scopeOf(null), ...(judge === undefined ? [] : [judgeScope(judge)])];
    // Spend is money: written under the section's lock even when called alone.
    this.atomically(() =>
      this.#run(
        `INSERT INTO ${S}.usage (scope, bucket, micros, calls) SELECT unnest($1::text[]), $2, $3, $4
         ON CONFLICT (scope, bucket) DO UPDATE SET micros = usage.micros + excluded.micros, calls = usage.calls + excluded.calls`,
        [scopes, bucket, Math.round(micros), calls],
      ),
    );
  }

  openReservation(r: ReservationRecord): void {
    this.atomically(() =>
      this.#run(
        `INSERT INTO ${S}.reservations (ref, owner_id, session_key, judge, model, expected_micros, worst_micros,
           created_ms, remote, ttl_ms, turns, transcript_chars, transcript_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        [
          r.id,
          r.ownerId,
          r.sessionKey,
          r.judge,
          r.model,
          Math.round(r.expectedMicros),
          Math.round(r.worstMicros),
          ms(r.createdMs),
          r.remote === true,
          Math.round(r.ttlMs ?? 0),
          r.turns ?? 0,
          r.transcriptChars ?? 0,
          r.transcriptHash ?? "",
        ],
      ),
    );
  }

  deleteReservation(id: string): boolean {
    return this.atomically(() => this.#run(`DELETE FROM ${S}.reservations WHERE ref = $1`, [id]) > 0);
  }

  reservation(id: string): StoredReservation | undefined {
    const r = this.#q(`SELECT * FROM ${S}.reservations WHERE ref = $1`, [id])[0];
    return r === undefined ? undefined : reservationOf(r);
  }

  takeReservation(id: string): StoredReservation | undefined {
    const r = this.atomically(
      () => this.#q(`DELETE FROM ${S}.reservations WHERE ref = $1 RETURNING *`, [id])[0],
    );
    return r === undefined ? undefined : reservationOf(r);
  }

  deadReservations(ownerIds: readonly string[]): StoredReservation[] {
    return this.#q(
      `SELECT * FROM ${S}.reservations r WHERE charged_micros IS NULL AND (orphaned_ms IS NOT NULL
         OR owner_id = ANY($1::text[]) OR NOT EXISTS (SELECT 1 FROM ${S}.owners o WHERE o.id = r.owner_id))`,
      [[...ownerIds]],
    ).map(reservationOf);
  }

  orphanReservation(id: string, atMs: number): void {
    this.atomically(() =>
      this.#run(
        `UPDATE ${S}.reservations SET orphaned_ms = $1 WHERE ref = $2 AND orphaned_ms IS NULL AND charged_micros IS NULL`,
        [ms(atMs), id],
      ),
    );
  }

  markCharged(id: string, micros: number, decisionId: DecisionId, atMs: number): void {
    this.atomically(() =>
      this.#run(
        `UPDATE ${S}.reservations SET charged_micros = $1, charged_ms = $2, decision_id = $3 WHERE ref = $4`,
        [Math.round(micros), ms(atMs), idParam(decisionId), id],
      ),
    );
  }

  recordDecision(d: DecisionRecord): DecisionId {
    const first = firstDecisionId(ms(d.ts));
    let id = addToId(first, this.#slot++ % DECISION_ID_SLOTS);
    for (;;) {
      // A conflict would abort an enclosing transaction: ask for none, and look at the count.
      const inserted = this.#run(
        `INSERT INTO ${S}.decisions (id, ts, session_key, judge, model, decision, reason, shadow, reserved_micros,
           charged_micros, saved_micros, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, turns,
           transcript_chars, transcript_hash, duration_ms, episode_id, cost_source, computed_micros)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
         ON CONFLICT (id) DO NOTHING`,
        [
          idParam(id),
          ms(d.ts),
          d.sessionKey,
          d.judge,
          d.model,
          d.decision,
          d.reason,
          d.shadow,
          ...decisionValues(d),
        ],
      );
      if (inserted > 0) return id;
      const free = this.#q(
        `SELECT min(id) + 1 AS id FROM ${S}.decisions d WHERE id >= $1
           AND NOT EXISTS (SELECT 1 FROM ${S}.decisions WHERE id = d.id + 1)`,
        [idParam(id)],
      )[0]!;
      id = idOf(free.id);
    }
  }

  updateDecision(id: DecisionId, d: DecisionRecord): void {
    this.#run(
      `UPDATE ${S}.decisions SET decision = $2, model = $3, charged_micros = $4, input_tokens = $5, output_tokens = $6,
         cache_read_tokens = $7, cache_write_tokens = $8, duration_ms = $9, cost_source = $10, computed_micros = $11
       WHERE id = $1`,
      [
        idParam(id),
        d.decision,
        d.model,
        Math.round(d.chargedMicros),
        d.inputTokens,
        d.outputTokens,
        d.cacheReadTokens,
        d.cacheWriteTokens,
        Math.round(d.durationMs),
        d.costSource ?? null,
        d.computedMicros == null ? null : Math.round(d.computedMicros),
      ],
    );
  }

  recordConfig(c: GuardConfigRecord): void {
    this.atomically(() => {
      const latest = this.#q(
        `SELECT * FROM ${S}.guard_config WHERE started_ms <= $1 ORDER BY started_ms DESC, id DESC LIMIT 1`,
        [ms(c.startedMs)],
      )[0];
      if (latest !== undefined && sameCaps(configOf(latest), c)) return;
      this.#run(
        `INSERT INTO ${S}.guard_config (started_ms, owner_id, mode, session_budget_micros, session_max_calls,
           budget_window_ms, daily_budget_micros, judge_budget_micros, judge_budgets)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          ms(c.startedMs),
          c.ownerId,
          c.mode,
          c.sessionBudgetMicros,
          c.sessionMaxCalls,
          Math.round(c.budgetWindowMs),
          c.dailyBudgetMicros,
          c.judgeBudgetMicros ?? null,
          judgeBudgetsText(c),
        ],
      );
    });
  }

  /** Recorded guard configurations, oldest first (for reports and tests). */
  configs(): GuardConfigRecord[] {
    return this.#q(`SELECT * FROM ${S}.guard_config ORDER BY started_ms, id`).map(configOf);
  }

  registerOwner(o: OwnerRecord): void {
    this.#run(
      `INSERT INTO ${S}.owners (id, pid, hostname, proc_start, boot_id, pid_ns, started_ms, heartbeat_ms, beat)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, hostname = excluded.hostname, proc_start = excluded.proc_start,
         boot_id = excluded.boot_id, pid_ns = excluded.pid_ns, started_ms = excluded.started_ms,
         heartbeat_ms = excluded.heartbeat_ms, beat = excluded.beat, lease_until = excluded.lease_until`,
      [
        o.id,
        o.pid,
        o.hostname,
        o.procStart,
        o.bootId ?? null,
        o.pidNs ?? null,
        ms(o.startedMs),
        ms(o.heartbeatMs),
        o.beat ?? 0,
      ],
    );
  }

  heartbeat(ownerId: string, nowMs: number): boolean {
    return (
      this.#run(`UPDATE ${S}.owners SET heartbeat_ms = $1, beat = beat + 1 WHERE id = $2`, [
        ms(nowMs),
        ownerId,
      ]) > 0
    );
  }

  renewLease(ownerId: string, leaseMs: number): boolean {
    return (
      this.#run(
        `UPDATE ${S}.owners SET lease_until = clock_timestamp() + $2 * interval '1 millisecond' WHERE id = $1`,
        [ownerId, Math.round(leaseMs)],
      ) > 0
    );
  }

  expiredOwners(): string[] {
    return this.#q(`SELECT id FROM ${S}.owners WHERE lease_until < clock_timestamp()`).map((r) =>
      String(r.id),
    );
  }

  removeOwner(ownerId: string): void {
    this.#run(`DELETE FROM ${S}.owners WHERE id = $1`, [ownerId]);
  }

  owners(): OwnerRecord[] {
    return this.#q(`SELECT * FROM ${S}.owners`).map((r) => ({
      id: String(r.id),
      pid: num(r.pid),
      hostname: String(r.hostname),
      procStart: r.proc_start == null ? null : String(r.proc_start),
      bootId: r.boot_id == null ? null : String(r.boot_id),
      pidNs: r.pid_ns == null ? null : String(r.pid_ns),
      startedMs: num(r.started_ms),
      heartbeatMs: num(r.heartbeat_ms),
      beat: num(r.beat),
    }));
  }

  pruneUsage(beforeMs: number): void {
    this.atomically(() => {
      this.#run(`DELETE FROM ${S}.usage WHERE bucket <= $1`, [ms(beforeMs) - this.#bucketMs]);
      this.#run(`DELETE FROM ${S}.reservations WHERE charged_ms < $1`, [ms(beforeMs)]);
    });
  }

  pruneHorizon(): number | null {
    const r = this.#q(
      `SELECT coalesce((SELECT ms FROM ${S}.ledger_clock WHERE name = 'prune_horizon'), (SELECT min(bucket) FROM ${S}.usage)) AS ms`,
    )[0];
    return numOrNull(r?.ms);
  }

  setPruneHorizon(at: number): void {
    this.#run(
      `INSERT INTO ${S}.ledger_clock (name, ms) VALUES ('prune_horizon', $1)
       ON CONFLICT (name) DO UPDATE SET ms = greatest(ledger_clock.ms, excluded.ms)`,
      [ms(at)],
    );
  }

  keyState(sessionKey: string): KeyStateRecord | undefined {
    const r = this.#q(`SELECT * FROM ${S}.key_state WHERE session_key = $1`, [sessionKey])[0];
    if (r === undefined) return undefined;
    return {
      sessionKey,
      stuck: r.stuck === true,
      episodeId: r.episode_id == null ? null : String(r.episode_id),
      fingerprint: r.fingerprint == null ? null : String(r.fingerprint),
      repeats: num(r.repeats),
      lastSignalMs: numOrNull(r.last_signal_ms),
      signalled: r.signalled === true,
      updatedMs: num(r.updated_ms),
    };
  }

  saveKeyState(s: KeyStateRecord): void {
    this.#run(
      `INSERT INTO ${S}.key_state (session_key, stuck, episode_id, fingerprint, repeats, last_signal_ms, signalled, updated_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (session_key) DO UPDATE SET stuck = excluded.stuck, episode_id = excluded.episode_id,
         fingerprint = excluded.fingerprint, repeats = excluded.repeats, last_signal_ms = excluded.last_signal_ms,
         signalled = excluded.signalled, updated_ms = excluded.updated_ms`,
      [
        s.sessionKey,
        s.stuck,
        s.episodeId,
        s.fingerprint,
        s.repeats,
        s.lastSignalMs === null ? null : ms(s.lastSignalMs),
        s.signalled,
        ms(s.updatedMs),
      ],
    );
  }

  openEpisode(e: EpisodeRecord): void {
    this.#run(
      `INSERT INTO ${S}.episodes (id, session_key, fingerprint, evidence, repeats, detected_turn, started_ms, trail)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
      [
        e.id,
        e.sessionKey,
        e.fingerprint,
        e.evidence,
        e.repeats,
        e.detectedTurn,
        ms(e.startedMs),
        e.trail === undefined ? null : JSON.stringify(e.trail),
      ],
    );
  }

  closeEpisode(id: string, endedMs: number): void {
    this.#run(`UPDATE ${S}.episodes SET ended_ms = $1 WHERE id = $2 AND ended_ms IS NULL`, [ms(endedMs), id]);
  }

  /** Episodes, newest first (for reports and tests). */
  episodes(): Array<EpisodeRecord & { endedMs: number | null }> {
    return this.#q(`SELECT * FROM ${S}.episodes ORDER BY started_ms DESC`).map((r) => ({
      id: String(r.id),
      sessionKey: String(r.session_key),
      fingerprint: String(r.fingerprint),
      evidence: String(r.evidence) as StuckEvidence,
      repeats: num(r.repeats),
      detectedTurn: num(r.detected_turn),
      startedMs: num(r.started_ms),
      endedMs: numOrNull(r.ended_ms),
      ...(r.trail == null ? {} : { trail: parseTrail(r.trail) ?? undefined }),
    }));
  }

  cannedFingerprints(): string[] {
    return this.#q(`SELECT fingerprint FROM ${S}.canned_fingerprints`).map((r) => String(r.fingerprint));
  }

  addCannedFingerprint(fingerprint: string, source: "episode" | "operator", atMs: number): void {
    this.#run(
      `INSERT INTO ${S}.canned_fingerprints (fingerprint, source, first_seen_ms) VALUES ($1, $2, $3)
       ON CONFLICT (fingerprint) DO NOTHING`,
      [fingerprint, source, ms(atMs)],
    );
  }

  removeCannedFingerprint(fingerprint: string): void {
    this.#run(`DELETE FROM ${S}.canned_fingerprints WHERE fingerprint = $1`, [fingerprint]);
  }

  recordSignal(s: SignalRecord): void {
    this.#run(
      `INSERT INTO ${S}.signals (ts, event_id, episode_id, session_key, channel, event, status, attempts, error)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [ms(s.ts), s.eventId, s.episodeId, s.sessionKey, s.channel, s.event, s.status, s.attempts, s.error],
    );
  }

  signalDelivered(eventId: string): boolean {
    return (
      this.#q(`SELECT 1 FROM ${S}.signals WHERE event_id = $1 AND status = 'delivered' LIMIT 1`, [eventId])
        .length > 0
    );
  }

  claimSignal(eventId: string, nowMs: number, retryAfterMs: number): SignalClaim {
    return this.atomically(() => {
      // The claim is one conditional upsert: it wins only where no claim exists, or where the
      // last one is undelivered and at least `retryAfterMs` old.
      const won = this.#q(
        `INSERT INTO ${S}.signal_claims (event_id, claimed_ms) VALUES ($1, $2)
         ON CONFLICT (event_id) DO UPDATE SET claimed_ms = excluded.claimed_ms
           WHERE NOT signal_claims.delivered AND excluded.claimed_ms - signal_claims.claimed_ms >= $3
         RETURNING (xmax = 0) AS fresh`,
        [eventId, ms(nowMs), Math.round(retryAfterMs)],
      );
      const claim = this.#q(`SELECT delivered FROM ${S}.signal_claims WHERE event_id = $1`, [eventId])[0];
      if (claim?.delivered === true) return "delivered";
      if (won.length === 0) return "taken";
      // A delivery recorded without a claim (a store user that never claims) still counts.
      if (won[0]!.fresh === true && this.signalDelivered(eventId)) {
        this.completeSignal(eventId, nowMs);
        return "delivered";
      }
      return "claimed";
    });
  }

  completeSignal(eventId: string, nowMs: number): void {
    this.#run(
      `INSERT INTO ${S}.signal_claims (event_id, claimed_ms, delivered) VALUES ($1, $2, true)
       ON CONFLICT (event_id) DO UPDATE SET delivered = true`,
      [eventId, ms(nowMs)],
    );
  }

  estimateStats(): EstimateStats[] {
    return this.#q(`SELECT * FROM ${S}.estimates`).map((r) => ({
      judge: String(r.judge),
      model: String(r.model),
      samples: num(r.samples),
      outputMean: num(r.output_mean),
      outputVar: num(r.output_var),
      outputMax: num(r.output_max),
      inputRatio: num(r.input_ratio),
      inputRatioMax: num(r.input_ratio_max),
    }));
  }

  saveEstimateStats(s: EstimateStats): void {
    this.#run(
      `INSERT INTO ${S}.estimates (judge, model, samples, output_mean, output_var, output_max, input_ratio, input_ratio_max)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (judge, model) DO UPDATE SET samples = excluded.samples, output_mean = excluded.output_mean,
         output_var = excluded.output_var, output_max = excluded.output_max, input_ratio = excluded.input_ratio,
         input_ratio_max = excluded.input_ratio_max`,
      [
        s.judge,
        s.model,
        Math.round(s.samples),
        s.outputMean,
        s.outputVar,
        Math.round(s.outputMax),
        s.inputRatio,
        s.inputRatioMax,
      ],
    );
  }

  close(): void {
    this.#closed = true;
    this.#c?.close();
    this.#c = undefined;
    this.#fault ??= new LedgerFaultError(
      this.location,
      "cannot-open",
      `the PostgreSQL ledger ${this.location} is closed`,
    );
  }
}

const OPEN_SUMS =
  "count(*) AS n, coalesce(sum(expected_micros), 0) AS e, coalesce(sum(worst_micros), 0) AS w";

/** The columns of a decision after its id, time, key, judge, model, decision, reason and shadow flag. */
function decisionValues(d: DecisionRecord): unknown[] {
  return [
    Math.round(d.reservedMicros),
    Math.round(d.chargedMicros),
    Math.round(d.savedMicros),
    d.inputTokens,
    d.outputTokens,
    d.cacheReadTokens,
    d.cacheWriteTokens,
    d.turns,
    d.transcriptChars,
    d.transcriptHash,
    Math.round(d.durationMs),
    d.episodeId,
    d.costSource ?? null,
    d.computedMicros == null ? null : Math.round(d.computedMicros),
  ];
}
