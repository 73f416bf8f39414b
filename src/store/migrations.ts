import type Database from "better-sqlite3";
import { DECISION_ID_SLOTS, idMillisecondSql } from "./decision-ids.js";

/** SQL, or a function for a step SQL cannot express; it runs inside the migration's transaction. */
type Migration = string | ((db: Database.Database) => void);

/**
 * The decisions table as v1 made it, which v3 makes again (with ids of its own) to copy into:
 * one text, so that the two cannot drift. Frozen with the migrations that use it.
 */
const decisionsTable = (name: string): string => `CREATE TABLE ${name} (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    session_key TEXT NOT NULL,
    judge TEXT NOT NULL,
    model TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('judged', 'failed', 'skipped')),
    reason TEXT,
    shadow INTEGER NOT NULL DEFAULT 0,
    reserved_micros INTEGER NOT NULL DEFAULT 0,
    charged_micros INTEGER NOT NULL DEFAULT 0,
    saved_micros INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    turns INTEGER NOT NULL DEFAULT 0,
    transcript_chars INTEGER NOT NULL DEFAULT 0,
    transcript_hash TEXT NOT NULL DEFAULT '',
    duration_ms INTEGER NOT NULL DEFAULT 0,
    episode_id TEXT
  );`;

/**
 * The reservations table as v1 made it, keyed by `key` (its id, or v3's id and ref), which v3
 * makes again to copy into: one text, as the decisions table's. Frozen with the migrations.
 */
const reservationsTable = (name: string, key: string): string => `CREATE TABLE ${name} (
    ${key},
    owner_id TEXT NOT NULL,
    session_key TEXT NOT NULL,
    judge TEXT NOT NULL,
    model TEXT NOT NULL,
    expected_micros INTEGER NOT NULL,
    worst_micros INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
  );`;

/**
 * Ledger schema, one entry per version; `PRAGMA user_version` records how many have run.
 * Append only: a released migration is never edited.
 */
export const MIGRATIONS: readonly Migration[] = [
  // v1
  `
  ${decisionsTable("decisions")}
  CREATE INDEX decisions_ts ON decisions (ts);
  CREATE INDEX decisions_key_ts ON decisions (session_key, ts);

  CREATE TABLE usage (
    scope TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    micros INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (scope, bucket)
  ) WITHOUT ROWID;

  ${reservationsTable("reservations", "id TEXT PRIMARY KEY")}
  CREATE INDEX reservations_key ON reservations (session_key);

  CREATE TABLE owners (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    hostname TEXT NOT NULL,
    proc_start TEXT,
    started_ms INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL
  );

  CREATE TABLE key_state (
    session_key TEXT PRIMARY KEY,
    stuck INTEGER NOT NULL,
    episode_id TEXT,
    fingerprint TEXT,
    repeats INTEGER NOT NULL,
    last_signal_ms INTEGER,
    signalled INTEGER NOT NULL DEFAULT 0,
    updated_ms INTEGER NOT NULL
  );

  CREATE TABLE episodes (
    id TEXT PRIMARY KEY,
    session_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    evidence TEXT NOT NULL,
    repeats INTEGER NOT NULL,
    detected_turn INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER
  );
  CREATE INDEX episodes_key ON episodes (session_key, started_ms);

  CREATE TABLE canned_fingerprints (
    fingerprint TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL
  );

  CREATE TABLE signals (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    episode_id TEXT,
    session_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT
  );
  CREATE INDEX signals_ts ON signals (ts);

  CREATE TABLE estimates (
    judge TEXT NOT NULL,
    model TEXT NOT NULL,
    samples INTEGER NOT NULL,
    output_mean REAL NOT NULL,
    output_var REAL NOT NULL,
    output_max INTEGER NOT NULL,
    input_ratio REAL NOT NULL,
    input_ratio_max REAL NOT NULL,
    PRIMARY KEY (judge, model)
  );
  `,
  // v2: which event (episode or budget alert) a delivery was for, so an alert is sent once per
  // window by every process sharing the ledger, and across restarts.
  `
  ALTER TABLE signals ADD COLUMN event_id TEXT;
  CREATE INDEX signals_event ON signals (event_id);
  `,
  // v3: fewer B-trees written per judged call (each is a page in the WAL at every commit).
  // - Reservations are the calls in flight, a few rows: one B-tree, no index; lookups and
  //   sums scan the table.
  // - Decisions are keyed by time: id = ts * 1024 + a slot (see decision-ids.ts), so a report's
  //   time range is a range of the table itself, and neither a time index nor a
  //   (session_key, ts) index is written on every decision.
  (db) => {
    db.exec(`
  ${reservationsTable("reservations_v3", "id INTEGER PRIMARY KEY,\n    ref TEXT NOT NULL")}
  INSERT INTO reservations_v3 (ref, owner_id, session_key, judge, model, expected_micros, worst_micros, created_ms)
    SELECT id, owner_id, session_key, judge, model, expected_micros, worst_micros, created_ms FROM reservations;
  DROP TABLE reservations;
  ALTER TABLE reservations_v3 RENAME TO reservations;

  ${decisionsTable("decisions_v3")}
    `);
    // A millisecond's rows take its slots in order (fractional times by their whole millisecond,
    // negative ones as 0). Past 1024 rows in one millisecond (a replay on a fixed clock), the
    // rest take the next free ids after, as new rows do: ids stay unique and never below
    // ms * 1024.
    const columns = `ts, session_key, judge, model, decision, reason, shadow, reserved_micros,
      charged_micros, saved_micros, input_tokens, output_tokens, cache_read_tokens,
      cache_write_tokens, turns, transcript_chars, transcript_hash, duration_ms, episode_id`;
    const ranked = `SELECT *, ${idMillisecondSql("ts")} AS ms, row_number() OVER (PARTITION BY ${idMillisecondSql("ts")} ORDER BY id) AS rn FROM decisions`;
    db.exec(
      `INSERT INTO decisions_v3 (id, ${columns})
       SELECT ms * ${DECISION_ID_SLOTS} + rn - 1, ${columns} FROM (${ranked}) WHERE rn <= ${DECISION_ID_SLOTS}`,
    );
    const spilled = db
      .prepare(`SELECT id, ms FROM (${ranked}) WHERE rn > ${DECISION_ID_SLOTS} ORDER BY ms, id`)
      .safeIntegers(true)
      .all() as Array<{ id: bigint; ms: bigint }>;
    const copy = db.prepare(
      `INSERT INTO decisions_v3 (id, ${columns}) SELECT ?, ${columns} FROM decisions WHERE id = ?`,
    );
    const free = db
      .prepare(
        "SELECT min(id) + 1 AS id FROM decisions_v3 AS d WHERE id >= ? AND NOT EXISTS (SELECT 1 FROM decisions_v3 WHERE id = d.id + 1)",
      )
      .safeIntegers(true);
    const taken = db.prepare("SELECT 1 FROM decisions_v3 WHERE id = ?");
    let next = -1n;
    for (const r of spilled) {
      // The millisecond's own slots are full: the first free id after them (or after the last
      // row placed here, which is where the previous spilled row of this millisecond went).
      const start = (r.ms + 1n) * BigInt(DECISION_ID_SLOTS);
      const at = next > start ? next : start;
      const id = taken.get(at) === undefined ? at : (free.get(at) as { id: bigint }).id;
      copy.run(id, r.id);
      next = id + 1n;
    }
    db.exec("DROP TABLE decisions; ALTER TABLE decisions_v3 RENAME TO decisions;");
    // A judge-guard older than v3 still running against this ledger inserts decisions without
    // an id; SQLite gives them max(id) + 1, which can be below ms * 1024 and so outside every
    // report's range. Give such a row the id it should have had. (This guard's own rows never
    // meet the condition; evaluating it costs no I/O.)
    const ms = idMillisecondSql("NEW.ts");
    db.exec(`
      CREATE TRIGGER decisions_time_keyed AFTER INSERT ON decisions
      WHEN NEW.id < ${ms} * ${DECISION_ID_SLOTS}
      BEGIN
        UPDATE decisions SET id = (
          SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM decisions WHERE id = x) THEN x ELSE (
            SELECT min(d.id) + 1 FROM decisions AS d
            WHERE d.id >= x AND NOT EXISTS (SELECT 1 FROM decisions WHERE id = d.id + 1)
          ) END FROM (SELECT ${ms} * ${DECISION_ID_SLOTS} AS x)
        ) WHERE id = NEW.id;
      END;
    `);
  },
  // v4: where each charge came from, and the caps of every guard that opened the ledger.
  // - cost_source: 'reported' (the judge's own cost), 'computed' (tokens x price), 'estimate'
  //   (nothing reported: the reservation's estimate); NULL for skips and for rows written
  //   before v4 (a report reads rows with tokens as computed, as they were then).
  // - computed_micros: tokens x price where tokens were given, kept beside a reported cost.
  // - guard_config: one row per guard start whose caps differ from the latest row; a report
  //   reads the caps in force during its range from here, not from its own environment.
  // Existing rows are kept as they are: the columns are added, nothing is rewritten.
  `
  ALTER TABLE decisions ADD COLUMN cost_source TEXT CHECK (cost_source IN ('reported', 'computed', 'estimate'));
  ALTER TABLE decisions ADD COLUMN computed_micros INTEGER;
  CREATE TABLE guard_config (
    id INTEGER PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    owner_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    session_budget_micros INTEGER,
    session_max_calls INTEGER,
    budget_window_ms INTEGER NOT NULL,
    daily_budget_micros INTEGER
  );
  CREATE INDEX guard_config_started ON guard_config (started_ms);
  `,
  // v5: the evidence an episode was opened on, reply by reply, as JSON (fingerprints, lengths,
  // weights and reason codes; never text), for `judge-guard explain`. NULL for older episodes.
  `
  ALTER TABLE episodes ADD COLUMN trail TEXT;
  `,
  // v6: spend in flight survives its owner.
  // - reservations: a remote one (admit/settle, the sidecar's clients) waits for its settlement
  //   when its owner dies (orphaned_ms) for ttl_ms; one charged at its estimate without a
  //   settlement keeps a row (charged_micros, the decision_id it wrote) so that a late
  //   settlement corrects the charge instead of being refused; the transcript's sizes and hash
  //   go into that decision.
  // - owners: liveness by a heartbeat counter (beat), and a pid is proof only within one kernel
  //   boot and PID namespace (boot_id, pid_ns).
  // - ledger_clock: the prune horizon, which advances only as fast as time really passes.
  `
  ALTER TABLE reservations ADD COLUMN remote INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE reservations ADD COLUMN ttl_ms INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE reservations ADD COLUMN turns INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE reservations ADD COLUMN transcript_chars INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE reservations ADD COLUMN transcript_hash TEXT NOT NULL DEFAULT '';
  ALTER TABLE reservations ADD COLUMN orphaned_ms INTEGER;
  ALTER TABLE reservations ADD COLUMN charged_micros INTEGER;
  ALTER TABLE reservations ADD COLUMN charged_ms INTEGER;
  ALTER TABLE reservations ADD COLUMN decision_id INTEGER;
  ALTER TABLE owners ADD COLUMN boot_id TEXT;
  ALTER TABLE owners ADD COLUMN pid_ns TEXT;
  ALTER TABLE owners ADD COLUMN beat INTEGER NOT NULL DEFAULT 0;
  CREATE TABLE ledger_clock (name TEXT PRIMARY KEY, ms INTEGER NOT NULL) WITHOUT ROWID;
  `,
  // v7: who is delivering each event (a stuck episode or a budget alert). Several processes that
  // see one event at once claim it in one transaction; the first claim wins, and a claim whose
  // delivery never completed (its process died) may be taken again after the signal cooldown.
  `
  CREATE TABLE signal_claims (
    event_id TEXT PRIMARY KEY,
    claimed_ms INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  `,
  // v8: caps per judge kind.
  // - usage: spend per judge kind has a scope of its own ('j:' || judge), beside each key's
  //   ('k:' || key) and everything's ('*'). It is backfilled from the decisions of the two days
  //   before the latest one (a judge kind's window is 24 h), in one-minute buckets, so that a
  //   cap set at the upgrade counts what was spent before it.
  // - guard_config: the cap of every judge kind (judge_budget_micros) and of named ones
  //   (judge_budgets, JSON: judge kind -> micro-dollars, or null for none) each guard enforced.
  `
  ALTER TABLE guard_config ADD COLUMN judge_budget_micros INTEGER;
  ALTER TABLE guard_config ADD COLUMN judge_budgets TEXT;
  INSERT INTO usage (scope, bucket, micros, calls)
    SELECT 'j:' || judge, (ts / 60000) * 60000, sum(charged_micros),
           sum(CASE WHEN decision = 'judged' OR charged_micros > 0 THEN 1 ELSE 0 END)
    FROM decisions
    WHERE decision != 'skipped' AND ts >= (SELECT coalesce(max(ts), 0) FROM decisions) - 172800000
    GROUP BY judge, ts / 60000;
  `,
];

/**
 * Why `db` cannot be used as a ledger by this version, or null: written by a newer
 * judge-guard, or a SQLite file of something else (no schema version, tables of its own),
 * such as Phantom's data/phantom.db given as the ledger by mistake, which must not be touched.
 */
export function ledgerProblem(db: Database.Database, path: string): string | null {
  // One read transaction: read apart, another process's first migration could commit between
  // the version (0) and the tables (all of them), and a new ledger would pass for a foreign file.
  return db.inTransaction ? problemOf(db, path) : db.transaction(() => problemOf(db, path))();
}

function problemOf(db: Database.Database, path: string): string | null {
  const version = Number(db.pragma("user_version", { simple: true }));
  if (version > SCHEMA_VERSION) {
    return `the ledger ${path} has schema version ${version}, newer than this judge-guard understands (${SCHEMA_VERSION}): upgrade judge-guard or use another --db`;
  }
  if (version === 0) {
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 4")
      .pluck()
      .all() as string[];
    if (tables.length > 0) {
      return `${path} is not a judge-guard ledger: it holds other tables (${tables.join(", ")}); give --db (or JUDGE_GUARD_DB) a new file or an existing ledger`;
    }
  }
  return null;
}

/** Runs migration `index` (0 for v1) on `db`; the caller holds the transaction. */
export function applyMigration(db: Database.Database, index: number): void {
  const m = MIGRATIONS[index]!;
  if (typeof m === "string") db.exec(m);
  else m(db);
}

export const SCHEMA_VERSION = MIGRATIONS.length;
