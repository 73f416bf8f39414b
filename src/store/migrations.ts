/**
 * Ledger schema, one entry per version; `PRAGMA user_version` records how many have run.
 * Append only: a released migration is never edited.
 */
export const MIGRATIONS: readonly string[] = [
  // v1
  `
  CREATE TABLE decisions (
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
  );
  CREATE INDEX decisions_ts ON decisions (ts);
  CREATE INDEX decisions_key_ts ON decisions (session_key, ts);

  CREATE TABLE usage (
    scope TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    micros INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (scope, bucket)
  ) WITHOUT ROWID;

  CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    session_key TEXT NOT NULL,
    judge TEXT NOT NULL,
    model TEXT NOT NULL,
    expected_micros INTEGER NOT NULL,
    worst_micros INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
  );
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
];

export const SCHEMA_VERSION = MIGRATIONS.length;
