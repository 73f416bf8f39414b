import { randomBytes, randomInt } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readSync,
  rmSync,
  statSync,
  unlinkSync,
} from "node:fs";
import { dirname } from "node:path";
import type Database from "better-sqlite3";
import type { StuckEvidence } from "../detection/evidence.js";
import { parseTrail } from "../detection/window.js";
import { isJudgeGuardError, LedgerFaultError, LedgerSchemaError } from "../errors.js";
import { bucketStart, DEFAULT_BUCKET_MS, judgeScope, scopeOf } from "./buckets.js";
import { type Checkpointer, startCheckpointer } from "./checkpointer.js";
import { addToId, DECISION_ID_SLOTS, type DecisionId, firstDecisionId } from "./decision-ids.js";
import { sqlite } from "./driver.js";
import { faultKind, ledgerFault, openFault } from "./faults.js";
import { judgeBudgetsText, sameCaps } from "./guard-config.js";
import { applyMigration, ledgerProblem, SCHEMA_VERSION } from "./migrations.js";
import { configOf, type Row, reservationOf } from "./rows.js";
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
  /**
   * When the file cannot be opened or written at construction (a read-only file, folder or
   * mount, no permission, a corrupt file): `"throw"` its {@link LedgerFaultError}, or `"retry"`:
   * construct the store unavailable (every operation throws that error) and try again at each
   * {@link SqliteStore.check}. A path that is no ledger (a folder, another program's database, a
   * newer schema) always throws a `LedgerSchemaError`. @default "throw"
   */
  readonly whenUnavailable?: "throw" | "retry";
  /**
   * How often the background worker runs `PRAGMA quick_check` on the tables behind budgets,
   * reservations and stuck state. It finds pages overwritten in the file that this connection
   * would not read again (it works from its cache and the WAL). 0 turns it off; it needs
   * `backgroundCheckpoints`. @default 60000
   */
  readonly integrityCheckMs?: number;
}

type Statements = ReturnType<typeof prepare>;

/** One open connection to the file, and what tells whether the file is still the one opened. */
interface Connection {
  readonly db: Database.Database;
  readonly s: Statements;
  readonly checkpointer: Checkpointer | undefined;
  readonly dev: number;
  readonly ino: number;
  /**
   * The file, opened read-only for its header. Closed only after SQLite's connections to it:
   * closing any descriptor of a file drops every POSIX lock the process holds on it.
   */
  readonly fd: number | undefined;
}

let connection: (store: SqliteStore) => Database.Database;

/**
 * The store's own connection, for tests that inject faults into it or read its settings (a
 * reader opens a connection of its own); not part of the package's interface. Throws the
 * store's fault while it has no connection.
 */
export function connectionOf(store: SqliteStore): Database.Database {
  return connection(store);
}

/** How often, at most, an operation looks whether the file was deleted or replaced (a stat). */
const IDENTITY_CHECK_MS = 100;
const SQLITE_HEADER = Buffer.from("SQLite format 3\0", "latin1");

/**
 * The ledger in one SQLite file (WAL, short transactions, a busy timeout), shared safely by
 * several processes on one host. The file and its WAL are created mode 0600.
 *
 * A file that stops being usable (it cannot be written, it is corrupt, it was deleted or
 * replaced while open) makes every operation throw a {@link LedgerFaultError} naming it, rather
 * than go on writing somewhere nobody reads; {@link check} (the guard's heartbeat) notices what
 * operations would not, and recovers when it can.
 */
export class SqliteStore implements LedgerStore {
  readonly location: string;
  readonly #o: SqliteStoreOptions;
  readonly #bucketMs: number;
  #c: Connection | undefined;
  #fault: LedgerFaultError | undefined;
  /** Once a file was opened it is never created again: a new, empty ledger would restart every budget. */
  #opened = false;
  #checkedAt = 0;
  readonly #released = new WeakSet<Connection>();
  /** Where this process starts looking for a free decision id within a millisecond. */
  #slot = randomInt(DECISION_ID_SLOTS);
  #crowded: { first: DecisionId; next: DecisionId } | undefined;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    sqlite(); // the driver first: where it cannot load (Bun), no file may be left behind
    this.location = path;
    this.#o = options;
    this.#bucketMs = options.bucketMs ?? DEFAULT_BUCKET_MS;
    try {
      this.#c = this.#connect();
    } catch (e) {
      if (!(e instanceof LedgerFaultError) || options.whenUnavailable !== "retry") throw e;
      this.#fault = e;
    }
  }

  static {
    connection = (store) => {
      if (store.#c === undefined) throw store.#fault!;
      return store.#c.db;
    };
  }

  /** Why the ledger cannot be used right now, or undefined. */
  get fault(): LedgerFaultError | undefined {
    return this.#fault;
  }

  /** The last error of the background checkpointer, if it failed (checkpoints are then inline). */
  checkpointError: string | undefined;

  /**
   * Looks at the file itself (the guard calls it on its heartbeat): still the file opened, with
   * a SQLite header? Then recovers from a fault when it can: reopens a file that can be written
   * again, adopts a file put in place of this one, restores a deleted ledger from this process's
   * open copy.
   */
  check(): LedgerCheck {
    let found: LedgerFaultError | undefined;
    if (this.#fault === undefined) {
      const c = this.#c;
      if (c?.fd === undefined || !c.db.open) return {};
      const problem = this.#moved(c) ?? this.#badHeader(c);
      if (problem === undefined) return {};
      found = this.#fail(problem);
    }
    try {
      const recovered = this.#recover();
      return found === undefined ? { recovered } : { fault: found, recovered };
    } catch (e) {
      return { fault: e as Error };
    }
  }

  #recover(): string {
    const fault = this.#fault!;
    const path = this.location;
    const c = this.#c;
    // Corruption needs its operator: reopening would have SQLite apply the WAL of the corrupt
    // file to whatever is put in its place.
    if (fault.fault === "corrupt") throw fault;
    let done: string;
    if (fault.fault === "deleted" && c !== undefined && !existsSync(path)) {
      try {
        done = this.#restore(c)
          ? "restored it from this process's open copy after it was deleted"
          : `switched to the ledger another guard restored at ${path} after it was deleted`;
      } catch (e) {
        // The open copy stays open: the next heartbeat tries again.
        throw this.#fail(
          ledgerFault(
            path,
            "deleted",
            undefined,
            `could not be restored from this process's open copy (${(e as Error).message})`,
          ),
          true,
        );
      }
    } else if (fault.fault === "deleted" || fault.fault === "replaced") {
      if (!existsSync(path)) throw fault;
      const stale = staleWal(path);
      if (stale !== undefined) throw this.#fail(ledgerFault(path, "replaced", undefined, stale), true);
      done = `switched to the file now at ${path}, which replaced the one in use (spend recorded only in the old file is not counted)`;
    } else {
      done = `${this.#opened ? "reopened" : "opened"} it, unavailable until now (${fault.fault})`;
    }
    if (c !== undefined) this.#disconnect(c);
    this.#c = undefined;
    try {
      this.#c = this.#connect();
    } catch (e) {
      const next =
        e instanceof LedgerFaultError
          ? e
          : new LedgerFaultError(path, "cannot-open", (e as Error).message, { cause: e });
      throw this.#fail(next, true);
    }
    this.#fault = undefined;
    return done;
  }

  /**
   * Writes the open (deleted) ledger back to its path: a copy beside it, linked into place only
   * if nothing took the path meanwhile (another guard's restoration, or a new ledger). True when
   * this copy is the one in place.
   */
  #restore(c: Connection): boolean {
    const path = this.location;
    mkdirSync(dirname(path), { recursive: true });
    const copy = `${path}.restore-${process.pid}-${randomBytes(4).toString("hex")}`;
    closeSync(openSync(copy, "wx", 0o600));
    try {
      c.db.prepare("VACUUM INTO ?").run(copy);
      chmodSync(copy, 0o600);
      // Someone else put a ledger there meanwhile (another guard's restoration): that one stands.
      if (existsSync(path)) return false;
      // Only the file was deleted? Its WAL is in the copy already, and SQLite must not apply it
      // again to the copy, whose pages are laid out anew.
      for (const beside of [`${path}-wal`, `${path}-shm`]) rmSync(beside, { force: true });
      try {
        linkSync(copy, path);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        return false;
      }
    } finally {
      unlinkSync(copy);
    }
  }

  /** Records a fault (the first one found stays, unless `replace`); returns it to throw. */
  #fail(fault: LedgerFaultError, replace = false): LedgerFaultError {
    if (this.#fault === undefined || replace) this.#fault = fault;
    return this.#fault;
  }

  /** The fault the file's path shows: deleted, or replaced by another file; undefined if neither. */
  #moved(c: Connection): LedgerFaultError | undefined {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(this.location, { throwIfNoEntry: false });
    } catch {
      return undefined; // cannot tell (a folder no longer searchable): operations will say
    }
    if (st === undefined) return ledgerFault(this.location, "deleted");
    if (st.ino !== c.ino || st.dev !== c.dev) return ledgerFault(this.location, "replaced");
    return undefined;
  }

  /** The file's first bytes are SQLite's header (a new file may be empty: its pages are in the WAL). */
  #badHeader(c: Connection): LedgerFaultError | undefined {
    const head = Buffer.alloc(SQLITE_HEADER.length);
    let n: number;
    try {
      n = readSync(c.fd!, head, 0, head.length, 0);
    } catch (e) {
      return ledgerFault(this.location, "io", e);
    }
    if (n === 0 || head.equals(SQLITE_HEADER)) return undefined;
    return ledgerFault(
      this.location,
      "corrupt",
      new Error("its first bytes are not a SQLite header: the file was overwritten"),
    );
  }

  /**
   * The connection's statements, for one operation: they throw the fault while the ledger is
   * unavailable, and a statement that finds the file itself unusable marks it so.
   */
  get #s(): Statements {
    return this.#live().s;
  }

  #live(): Connection {
    if (this.#fault !== undefined) throw this.#fault;
    const c = this.#c!;
    if (c.fd !== undefined && !c.db.inTransaction) {
      // A deleted file still answers, to this process alone: stop writing to it at once.
      const now = performance.now();
      if (now - this.#checkedAt >= IDENTITY_CHECK_MS) {
        this.#checkedAt = now;
        const moved = c.db.open ? this.#moved(c) : undefined;
        if (moved !== undefined) throw this.#fail(moved);
      }
    }
    return c;
  }

  #failed(e: unknown, c: Connection): unknown {
    if (isJudgeGuardError(e) || c !== this.#c) return e;
    const kind = faultKind(e);
    if (kind === undefined) return e;
    // A file that is gone answers as read-only: say what really happened.
    return this.#fail(
      (c.fd !== undefined ? this.#moved(c) : undefined) ?? ledgerFault(this.location, kind, e),
    );
  }

  /** Opens the file: creates it (and its folder) only if no file was ever opened here. */
  #connect(): Connection {
    const path = this.location;
    const memory = path === ":memory:";
    let db: Database.Database;
    try {
      if (!memory && !this.#opened) createPrivateFile(path);
      db = new (sqlite())(path, { fileMustExist: !memory && this.#opened });
    } catch (e) {
      let folder = false;
      try {
        folder = !memory && statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
      } catch {}
      if (folder) {
        throw new LedgerSchemaError(
          `cannot open the ledger ${path}: it is a folder; give --db (or JUDGE_GUARD_DB) the path of a ledger file`,
        );
      }
      const fault = openFault(path, e);
      if (fault !== undefined) throw fault;
      throw new LedgerSchemaError(
        `cannot open the ledger ${path}: ${(e as Error).message}; give --db (or JUDGE_GUARD_DB) the path of a ledger file`,
      );
    }
    let fd: number | undefined;
    let checkpointer: Checkpointer | undefined;
    try {
      db.pragma(`busy_timeout = ${Math.trunc(this.#o.busyTimeoutMs ?? 5000)}`);
      // Before anything is written: not even the journal mode of a foreign file may change.
      const problem = ledgerProblem(db, path);
      if (problem !== null) throw new LedgerSchemaError(problem);
      if (!memory) enableWal(db);
      db.pragma("synchronous = NORMAL");
      migrate(db);
      // SQLite opens a file it may not write read-only, without a word: find out now.
      if (!memory) probeWritable(db);
      let conn: Connection | undefined;
      const s = guarded(prepare(db), (e) => (conn === undefined ? e : this.#failed(e, conn)));
      let dev = 0;
      let ino = 0;
      if (!memory) {
        ({ dev, ino } = statSync(path));
        fd = openSync(path, "r");
      }
      if (!memory && this.#o.backgroundCheckpoints !== false) {
        db.pragma(`wal_autocheckpoint = ${Math.trunc(this.#o.walLimitPages ?? 16384)}`);
        checkpointer = startCheckpointer(path, {
          intervalMs: this.#o.checkpointIntervalMs ?? 250,
          integrityCheckMs: this.#o.integrityCheckMs ?? 60_000,
          onError: (message) => {
            // Without the worker, commits checkpoint inline at SQLite's usual threshold.
            this.checkpointError = message;
            if (db.open) db.pragma("wal_autocheckpoint = 1000");
          },
          onCorrupt: (message) => {
            if (conn !== undefined && this.#c === conn)
              this.#fail(ledgerFault(path, "corrupt", new Error(message)));
          },
        });
      }
      conn = { db, s, checkpointer, dev, ino, fd };
      this.#opened = !memory;
      return conn;
    } catch (e) {
      checkpointer?.stopNow();
      db.close();
      if (fd !== undefined) closeSync(fd);
      if (isJudgeGuardError(e)) throw e;
      const code = (e as { code?: string }).code;
      if (code === "SQLITE_NOTADB" && !this.#opened) {
        throw new LedgerSchemaError(
          `${path} is not a judge-guard ledger (SQLite: ${(e as Error).message}): give --db (or JUDGE_GUARD_DB) a new file or an existing ledger`,
        );
      }
      throw openFault(path, e) ?? e;
    }
  }

  /**
   * Closes a connection: the worker's first (waiting for it, so that a connection opened next
   * shares nothing with it), then this one, then the descriptor, once no connection holds locks.
   */
  #disconnect(c: Connection): void {
    if (this.#released.has(c)) return;
    this.#released.add(c);
    c.checkpointer?.stopNow();
    if (c.db.open) c.db.close();
    if (c.fd !== undefined) closeSync(c.fd);
  }

  atomically<T>(fn: () => T): T {
    const { db, s } = this.#live();
    if (db.inTransaction) return fn();
    s.begin.run();
    try {
      const out = fn();
      s.commit.run();
      return out;
    } catch (e) {
      // This connection's, not `this.#s`: a statement inside may have found the file unusable meanwhile.
      if (db.inTransaction) s.rollback.run();
      throw e;
    }
  }

  scopeUsage(sessionKey: string | null, sinceMs: number): ScopeUsage {
    const s = this.#s;
    return this.#usage(scopeOf(sessionKey), sinceMs, () =>
      sessionKey === null ? s.openAll.get() : s.openKey.get(sessionKey),
    );
  }

  judgeUsage(judge: string, sinceMs: number): ScopeUsage {
    return this.#usage(judgeScope(judge), sinceMs, () => this.#s.openJudge.get(judge));
  }

  /** A scope's settled usage since `sinceMs`, then its open reservations, as `open` reads them. */
  #usage(scope: string, sinceMs: number, readOpen: () => unknown): ScopeUsage {
    const u = this.#s.usage.get({ scope, after: sinceMs - this.#bucketMs }) as Row;
    const open = readOpen() as Row;
    return {
      spentMicros: Number(u.m),
      calls: Number(u.c),
      openCount: Number(open.n),
      openExpectedMicros: Number(open.e),
      openWorstMicros: Number(open.w),
    };
  }

  addUsage(sessionKey: string, atMs: number, micros: number, calls: number, judge?: string): void {
    const bucket = bucketStart(atMs, this.#bucketMs);
    const add = this.#s.addUsage;
    add.run({ scope: scopeOf(sessionKey), bucket, micros, calls });
    add.run({ scope: scopeOf(null), bucket, micros, calls });
    if (judge !== undefined) add.run({ scope: judgeScope(judge), bucket, micros, calls });
  }

  openReservation(r: ReservationRecord): void {
    this.#s.openReservation.run({
      ref: r.id,
      owner: r.ownerId,
      key: r.sessionKey,
      judge: r.judge,
      model: r.model,
      expected: r.expectedMicros,
      worst: r.worstMicros,
      created: r.createdMs,
      remote: r.remote ? 1 : 0,
      ttl: r.ttlMs ?? 0,
      turns: r.turns ?? 0,
      chars: r.transcriptChars ?? 0,
      hash: r.transcriptHash ?? "",
    });
  }

  deleteReservation(id: string): boolean {
    // The table holds the calls in flight only: a scan is as quick as an index would be.
    return this.#s.deleteReservation.run(id).changes > 0;
  }

  reservation(id: string): StoredReservation | undefined {
    const r = this.#s.reservation.get(id) as Row | undefined;
    return r === undefined ? undefined : reservationOf(r);
  }

  takeReservation(id: string): StoredReservation | undefined {
    const r = this.#s.takeReservation.get(id) as Row | undefined;
    return r === undefined ? undefined : reservationOf(r);
  }

  deadReservations(ownerIds: readonly string[]): StoredReservation[] {
    return (this.#s.deadReservations.all(JSON.stringify(ownerIds)) as Row[]).map(reservationOf);
  }

  orphanReservation(id: string, atMs: number): void {
    this.#s.orphanReservation.run({ at: atMs, ref: id });
  }

  markCharged(id: string, micros: number, decisionId: DecisionId, atMs: number): void {
    this.#s.markCharged.run({ micros, at: atMs, decision: decisionId, ref: id });
  }

  recordDecision(d: DecisionRecord): DecisionId {
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
        return id;
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

  updateDecision(id: DecisionId, d: DecisionRecord): void {
    this.#s.updateDecision.run({ id, ...decisionColumns(d) });
  }

  #insertDecision(id: DecisionId, d: DecisionRecord): void {
    this.#s.decision.run({ id, ...decisionColumns(d) });
  }

  recordConfig(c: GuardConfigRecord): void {
    this.atomically(() => {
      // Redundant when the configuration in force at its start already says the same.
      const latest = this.#s.configAt.get(c.startedMs) as Row | undefined;
      if (latest !== undefined && sameCaps(configOf(latest), c)) return;
      this.#s.config.run({
        ...c,
        judgeBudgetMicros: c.judgeBudgetMicros ?? null,
        judgeBudgets: judgeBudgetsText(c),
      });
    });
  }

  /** Recorded guard configurations, oldest first (for reports and tests). */
  configs(): GuardConfigRecord[] {
    return (this.#s.configs.all() as Row[]).map(configOf);
  }

  registerOwner(o: OwnerRecord): void {
    this.#s.owner.run({
      id: o.id,
      pid: o.pid,
      hostname: o.hostname,
      procStart: o.procStart,
      bootId: o.bootId ?? null,
      pidNs: o.pidNs ?? null,
      started: o.startedMs,
      heartbeat: o.heartbeatMs,
      beat: o.beat ?? 0,
    });
  }

  heartbeat(ownerId: string, nowMs: number): boolean {
    return this.#s.heartbeat.run({ now: nowMs, id: ownerId }).changes > 0;
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
      bootId: r.boot_id == null ? null : String(r.boot_id),
      pidNs: r.pid_ns == null ? null : String(r.pid_ns),
      startedMs: Number(r.started_ms),
      heartbeatMs: Number(r.heartbeat_ms),
      beat: Number(r.beat ?? 0),
    }));
  }

  pruneUsage(beforeMs: number): void {
    this.#s.prune.run(beforeMs - this.#bucketMs);
    this.#s.pruneCharged.run(beforeMs);
  }

  pruneHorizon(): number | null {
    const r = this.#s.horizon.get() as Row | undefined;
    return r === undefined || r.ms === null ? null : Number(r.ms);
  }

  setPruneHorizon(ms: number): void {
    this.#s.setHorizon.run(ms);
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
    this.#s.saveKeyState.run({ ...s, stuck: s.stuck ? 1 : 0, signalled: s.signalled ? 1 : 0 });
  }

  openEpisode(e: EpisodeRecord): void {
    this.#s.openEpisode.run({ ...e, trail: e.trail === undefined ? null : JSON.stringify(e.trail) });
  }

  closeEpisode(id: string, endedMs: number): void {
    this.#s.closeEpisode.run({ ended: endedMs, id });
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
    this.#s.addCanned.run({ fingerprint, source, at: atMs });
  }

  removeCannedFingerprint(fingerprint: string): void {
    this.#s.removeCanned.run(fingerprint);
  }

  recordSignal(s: SignalRecord): void {
    this.#s.signal.run(s);
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
      this.#s.setClaim.run({ event: eventId, at: nowMs });
      return "claimed";
    });
  }

  completeSignal(eventId: string, nowMs: number): void {
    this.#s.completeClaim.run({ event: eventId, at: nowMs });
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
    this.#s.saveEstimate.run(s);
  }

  close(): void {
    if (this.#c !== undefined) this.#disconnect(this.#c);
  }
}

/** A decision's columns, as the statements that insert and rewrite one name them. */
function decisionColumns(d: DecisionRecord) {
  return {
    ts: d.ts,
    key: d.sessionKey,
    judge: d.judge,
    model: d.model,
    decision: d.decision,
    reason: d.reason,
    shadow: d.shadow ? 1 : 0,
    reserved: d.reservedMicros,
    charged: d.chargedMicros,
    saved: d.savedMicros,
    input: d.inputTokens,
    output: d.outputTokens,
    cacheRead: d.cacheReadTokens,
    cacheWrite: d.cacheWriteTokens,
    turns: d.turns,
    chars: d.transcriptChars,
    hash: d.transcriptHash,
    duration: d.durationMs,
    episode: d.episodeId,
    costSource: d.costSource ?? null,
    computed: d.computedMicros ?? null,
  };
}

/**
 * Why the WAL beside a file put in place of the ledger belongs to the file it replaced (it was
 * last written before the new file arrived), or undefined. SQLite would apply it to the new file.
 */
function staleWal(path: string): string | undefined {
  try {
    const wal = statSync(`${path}-wal`, { throwIfNoEntry: false });
    if (wal === undefined || wal.mtimeMs >= statSync(path).ctimeMs) return undefined;
  } catch {
    return undefined;
  }
  return `${path}-wal beside it belongs to the replaced file, and SQLite would apply it to the new one: stop every judge-guard using the ledger, delete ${path}-wal and ${path}-shm, and start them again`;
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

/**
 * Throws SQLITE_READONLY if the connection cannot write (a write that is rolled back). A lock
 * held elsewhere beyond the busy timeout tells nothing: the operations will say.
 */
function probeWritable(db: Database.Database): void {
  const version = Number(db.pragma("user_version", { simple: true }));
  try {
    db.exec("BEGIN IMMEDIATE");
    db.pragma(`user_version = ${version}`);
  } catch (e) {
    if ((e as { code?: string }).code !== "SQLITE_BUSY") throw e;
  } finally {
    if (db.inTransaction) db.exec("ROLLBACK");
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

/** Statements whose errors go through `fail` first (which may make them a ledger fault). */
function guarded<S extends Record<string, Database.Statement>>(
  statements: S,
  fail: (e: unknown) => unknown,
): S {
  for (const statement of Object.values(statements)) {
    for (const method of ["run", "get", "all"] as const) {
      const call = statement[method].bind(statement) as (...args: unknown[]) => unknown;
      Object.defineProperty(statement, method, {
        value: (...args: unknown[]) => {
          try {
            return call(...args);
          } catch (e) {
            throw fail(e);
          }
        },
      });
    }
  }
  return statements;
}

function prepare(db: Database.Database) {
  return {
    begin: db.prepare("BEGIN IMMEDIATE"),
    commit: db.prepare("COMMIT"),
    rollback: db.prepare("ROLLBACK"),
    usage: db.prepare(
      "SELECT coalesce(sum(micros), 0) AS m, coalesce(sum(calls), 0) AS c FROM usage WHERE scope = :scope AND bucket > :after",
    ),
    // Open: not charged yet (a reservation charged at its estimate is spend, in `usage`).
    openKey: db.prepare(
      "SELECT count(*) AS n, coalesce(sum(expected_micros), 0) AS e, coalesce(sum(worst_micros), 0) AS w FROM reservations WHERE session_key = ? AND charged_micros IS NULL",
    ),
    openJudge: db.prepare(
      "SELECT count(*) AS n, coalesce(sum(expected_micros), 0) AS e, coalesce(sum(worst_micros), 0) AS w FROM reservations WHERE judge = ? AND charged_micros IS NULL",
    ),
    openAll: db.prepare(
      "SELECT count(*) AS n, coalesce(sum(expected_micros), 0) AS e, coalesce(sum(worst_micros), 0) AS w FROM reservations WHERE charged_micros IS NULL",
    ),
    addUsage: db.prepare(
      "INSERT INTO usage (scope, bucket, micros, calls) VALUES (:scope, :bucket, :micros, :calls) ON CONFLICT (scope, bucket) DO UPDATE SET micros = micros + excluded.micros, calls = calls + excluded.calls",
    ),
    prune: db.prepare("DELETE FROM usage WHERE bucket <= ?"),
    pruneCharged: db.prepare("DELETE FROM reservations WHERE charged_ms < ?"),
    // Before any prune, the oldest bucket: nothing older has been pruned, by definition.
    horizon: db.prepare(
      "SELECT coalesce((SELECT ms FROM ledger_clock WHERE name = 'prune_horizon'), (SELECT min(bucket) FROM usage)) AS ms",
    ),
    setHorizon: db.prepare(
      "INSERT INTO ledger_clock (name, ms) VALUES ('prune_horizon', ?) ON CONFLICT (name) DO UPDATE SET ms = max(ms, excluded.ms)",
    ),
    openReservation: db.prepare(
      `INSERT INTO reservations (ref, owner_id, session_key, judge, model, expected_micros, worst_micros, created_ms,
        remote, ttl_ms, turns, transcript_chars, transcript_hash)
        VALUES (:ref, :owner, :key, :judge, :model, :expected, :worst, :created, :remote, :ttl, :turns, :chars, :hash)`,
    ),
    deleteReservation: db.prepare("DELETE FROM reservations WHERE ref = ?"),
    // Decision ids pass 2^53 with clocks past 2248 or in microseconds: read them exactly.
    reservation: db.prepare("SELECT * FROM reservations WHERE ref = ?").safeIntegers(true),
    takeReservation: db.prepare("DELETE FROM reservations WHERE ref = ? RETURNING *").safeIntegers(true),
    deadReservations: db
      .prepare(
        `SELECT * FROM reservations WHERE charged_micros IS NULL AND (orphaned_ms IS NOT NULL
        OR owner_id IN (SELECT value FROM json_each(?)) OR owner_id NOT IN (SELECT id FROM owners))`,
      )
      .safeIntegers(true),
    orphanReservation: db.prepare(
      "UPDATE reservations SET orphaned_ms = :at WHERE ref = :ref AND orphaned_ms IS NULL AND charged_micros IS NULL",
    ),
    markCharged: db.prepare(
      "UPDATE reservations SET charged_micros = :micros, charged_ms = :at, decision_id = :decision WHERE ref = :ref",
    ),
    updateDecision: db.prepare(
      `UPDATE decisions SET decision = :decision, model = :model, charged_micros = :charged, input_tokens = :input,
        output_tokens = :output, cache_read_tokens = :cacheRead, cache_write_tokens = :cacheWrite,
        duration_ms = :duration, cost_source = :costSource, computed_micros = :computed WHERE id = :id`,
    ),
    freeDecisionId: db
      .prepare(
        "SELECT min(id) + 1 AS id FROM decisions AS d WHERE id >= ? AND NOT EXISTS (SELECT 1 FROM decisions WHERE id = d.id + 1)",
      )
      .safeIntegers(true),
    decision: db.prepare(
      `INSERT INTO decisions (id, ts, session_key, judge, model, decision, reason, shadow, reserved_micros, charged_micros,
        saved_micros, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, turns, transcript_chars,
        transcript_hash, duration_ms, episode_id, cost_source, computed_micros)
        VALUES (:id, :ts, :key, :judge, :model, :decision, :reason, :shadow, :reserved, :charged, :saved, :input, :output,
        :cacheRead, :cacheWrite, :turns, :chars, :hash, :duration, :episode, :costSource, :computed)`,
    ),
    configAt: db.prepare(
      "SELECT * FROM guard_config WHERE started_ms <= ? ORDER BY started_ms DESC, id DESC LIMIT 1",
    ),
    configs: db.prepare("SELECT * FROM guard_config ORDER BY started_ms, id"),
    config: db.prepare(
      `INSERT INTO guard_config (started_ms, owner_id, mode, session_budget_micros, session_max_calls,
        budget_window_ms, daily_budget_micros, judge_budget_micros, judge_budgets) VALUES (:startedMs, :ownerId, :mode,
        :sessionBudgetMicros, :sessionMaxCalls, :budgetWindowMs, :dailyBudgetMicros, :judgeBudgetMicros, :judgeBudgets)`,
    ),
    owner: db.prepare(
      `INSERT OR REPLACE INTO owners (id, pid, hostname, proc_start, boot_id, pid_ns, started_ms, heartbeat_ms, beat)
        VALUES (:id, :pid, :hostname, :procStart, :bootId, :pidNs, :started, :heartbeat, :beat)`,
    ),
    heartbeat: db.prepare("UPDATE owners SET heartbeat_ms = :now, beat = beat + 1 WHERE id = :id"),
    removeOwner: db.prepare("DELETE FROM owners WHERE id = ?"),
    owners: db.prepare("SELECT * FROM owners"),
    keyState: db.prepare("SELECT * FROM key_state WHERE session_key = ?"),
    saveKeyState: db.prepare(
      `INSERT OR REPLACE INTO key_state (session_key, stuck, episode_id, fingerprint, repeats, last_signal_ms, signalled, updated_ms)
        VALUES (:sessionKey, :stuck, :episodeId, :fingerprint, :repeats, :lastSignalMs, :signalled, :updatedMs)`,
    ),
    openEpisode: db.prepare(
      `INSERT OR IGNORE INTO episodes (id, session_key, fingerprint, evidence, repeats, detected_turn, started_ms, trail)
        VALUES (:id, :sessionKey, :fingerprint, :evidence, :repeats, :detectedTurn, :startedMs, :trail)`,
    ),
    closeEpisode: db.prepare("UPDATE episodes SET ended_ms = :ended WHERE id = :id AND ended_ms IS NULL"),
    episodes: db.prepare("SELECT * FROM episodes ORDER BY started_ms DESC"),
    canned: db.prepare("SELECT fingerprint FROM canned_fingerprints"),
    addCanned: db.prepare(
      "INSERT OR IGNORE INTO canned_fingerprints (fingerprint, source, first_seen_ms) VALUES (:fingerprint, :source, :at)",
    ),
    removeCanned: db.prepare("DELETE FROM canned_fingerprints WHERE fingerprint = ?"),
    signal: db.prepare(
      `INSERT INTO signals (ts, event_id, episode_id, session_key, channel, event, status, attempts, error)
        VALUES (:ts, :eventId, :episodeId, :sessionKey, :channel, :event, :status, :attempts, :error)`,
    ),
    claim: db.prepare("SELECT claimed_ms, delivered FROM signal_claims WHERE event_id = ?"),
    setClaim: db.prepare(
      "INSERT INTO signal_claims (event_id, claimed_ms) VALUES (:event, :at) ON CONFLICT (event_id) DO UPDATE SET claimed_ms = excluded.claimed_ms",
    ),
    completeClaim: db.prepare(
      "INSERT INTO signal_claims (event_id, claimed_ms, delivered) VALUES (:event, :at, 1) ON CONFLICT (event_id) DO UPDATE SET delivered = 1",
    ),
    estimates: db.prepare("SELECT * FROM estimates"),
    delivered: db.prepare("SELECT 1 FROM signals WHERE event_id = ? AND status = 'delivered' LIMIT 1"),
    saveEstimate: db.prepare(
      `INSERT OR REPLACE INTO estimates (judge, model, samples, output_mean, output_var, output_max, input_ratio, input_ratio_max)
        VALUES (:judge, :model, :samples, :outputMean, :outputVar, :outputMax, :inputRatio, :inputRatioMax)`,
    ),
  };
}
