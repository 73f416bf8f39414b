import { LedgerSchemaError } from "../errors.js";
import type { PgConnection } from "./postgres-connection.js";

/*
 * The PostgreSQL ledger's schema, one entry per version. Append only: a released migration is
 * never edited. The tables live in a schema of their own (`judge_guard`), so a database that
 * other programs use too is fine; `judge_guard.schema_version` records how many entries have run.
 *
 * Version 1 is the SQLite ledger's schema v8 (migrations.ts) in PostgreSQL's types: times in
 * milliseconds and money in micro-dollars as bigint, flags as boolean; plus `owners.lease_until`,
 * the lease on the database's clock that tells hosts apart (see owners.ts and docs/postgres.md).
 */

/** The schema the ledger's tables live in. */
export const PG_SCHEMA = "judge_guard";

/** The advisory lock key that serialises migrations (any 64-bit number nobody else uses). */
export const MIGRATION_LOCK = 0x6a67_6d69_6772_6174n; // "jgmigrat"
/** The advisory lock key that serialises the ledger's atomic sections across hosts. */
export const SECTION_LOCK = 0x6a67_6c65_6467_6572n; // "jgledger"

export const PG_MIGRATIONS: readonly string[] = [
  // v1
  `
  CREATE TABLE judge_guard.decisions (
    id bigint PRIMARY KEY,
    ts bigint NOT NULL,
    session_key text NOT NULL,
    judge text NOT NULL,
    model text NOT NULL,
    decision text NOT NULL CHECK (decision IN ('judged', 'failed', 'skipped')),
    reason text,
    shadow boolean NOT NULL DEFAULT false,
    reserved_micros bigint NOT NULL DEFAULT 0,
    charged_micros bigint NOT NULL DEFAULT 0,
    saved_micros bigint NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    turns integer NOT NULL DEFAULT 0,
    transcript_chars bigint NOT NULL DEFAULT 0,
    transcript_hash text NOT NULL DEFAULT '',
    duration_ms bigint NOT NULL DEFAULT 0,
    episode_id text,
    cost_source text CHECK (cost_source IN ('reported', 'computed', 'estimate')),
    computed_micros bigint
  );
  CREATE INDEX decisions_key_ts ON judge_guard.decisions (session_key, ts);

  CREATE TABLE judge_guard.usage (
    scope text NOT NULL,
    bucket bigint NOT NULL,
    micros bigint NOT NULL,
    calls bigint NOT NULL,
    PRIMARY KEY (scope, bucket)
  );

  CREATE TABLE judge_guard.reservations (
    ref text PRIMARY KEY,
    owner_id text NOT NULL,
    session_key text NOT NULL,
    judge text NOT NULL,
    model text NOT NULL,
    expected_micros bigint NOT NULL,
    worst_micros bigint NOT NULL,
    created_ms bigint NOT NULL,
    remote boolean NOT NULL DEFAULT false,
    ttl_ms bigint NOT NULL DEFAULT 0,
    turns integer NOT NULL DEFAULT 0,
    transcript_chars bigint NOT NULL DEFAULT 0,
    transcript_hash text NOT NULL DEFAULT '',
    orphaned_ms bigint,
    charged_micros bigint,
    charged_ms bigint,
    decision_id bigint
  );

  CREATE TABLE judge_guard.owners (
    id text PRIMARY KEY,
    pid integer NOT NULL,
    hostname text NOT NULL,
    proc_start text,
    boot_id text,
    pid_ns text,
    started_ms bigint NOT NULL,
    heartbeat_ms bigint NOT NULL,
    beat bigint NOT NULL DEFAULT 0,
    lease_until timestamptz NOT NULL DEFAULT now() + interval '30 seconds'
  );

  CREATE TABLE judge_guard.guard_config (
    id bigserial PRIMARY KEY,
    started_ms bigint NOT NULL,
    owner_id text NOT NULL,
    mode text NOT NULL,
    session_budget_micros bigint,
    session_max_calls bigint,
    budget_window_ms bigint NOT NULL,
    daily_budget_micros bigint,
    judge_budget_micros bigint,
    judge_budgets text
  );
  CREATE INDEX guard_config_started ON judge_guard.guard_config (started_ms);

  CREATE TABLE judge_guard.key_state (
    session_key text PRIMARY KEY,
    stuck boolean NOT NULL,
    episode_id text,
    fingerprint text,
    repeats integer NOT NULL,
    last_signal_ms bigint,
    signalled boolean NOT NULL DEFAULT false,
    updated_ms bigint NOT NULL
  );

  CREATE TABLE judge_guard.episodes (
    id text PRIMARY KEY,
    session_key text NOT NULL,
    fingerprint text NOT NULL,
    evidence text NOT NULL,
    repeats integer NOT NULL,
    detected_turn integer NOT NULL,
    started_ms bigint NOT NULL,
    ended_ms bigint,
    trail text
  );
  CREATE INDEX episodes_key ON judge_guard.episodes (session_key, started_ms);

  CREATE TABLE judge_guard.canned_fingerprints (
    fingerprint text PRIMARY KEY,
    source text NOT NULL,
    first_seen_ms bigint NOT NULL
  );

  CREATE TABLE judge_guard.signals (
    id bigserial PRIMARY KEY,
    ts bigint NOT NULL,
    event_id text,
    episode_id text,
    session_key text NOT NULL,
    channel text NOT NULL,
    event text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    error text
  );
  CREATE INDEX signals_event ON judge_guard.signals (event_id);

  CREATE TABLE judge_guard.signal_claims (
    event_id text PRIMARY KEY,
    claimed_ms bigint NOT NULL,
    delivered boolean NOT NULL DEFAULT false
  );

  CREATE TABLE judge_guard.estimates (
    judge text NOT NULL,
    model text NOT NULL,
    samples bigint NOT NULL,
    output_mean double precision NOT NULL,
    output_var double precision NOT NULL,
    output_max bigint NOT NULL,
    input_ratio double precision NOT NULL,
    input_ratio_max double precision NOT NULL,
    PRIMARY KEY (judge, model)
  );

  CREATE TABLE judge_guard.ledger_clock (name text PRIMARY KEY, ms bigint NOT NULL);
  `,
];

export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;

/**
 * The schema version of the ledger in the database `c` is connected to: 0 when it has none yet.
 * Throws a {@link LedgerSchemaError} when the `judge_guard` schema holds tables but no version.
 */
export function pgSchemaVersion(c: PgConnection, where: string): number {
  const found = c.query(
    `SELECT to_regclass('${PG_SCHEMA}.schema_version') IS NOT NULL AS versioned,
       (SELECT count(*) FROM pg_tables WHERE schemaname = '${PG_SCHEMA}')::int AS tables`,
  ).rows[0]!;
  if (found.versioned !== true) {
    if (Number(found.tables) > 0)
      throw new LedgerSchemaError(
        `${where} holds a "${PG_SCHEMA}" schema that is no judge-guard ledger (no schema_version table): point JUDGE_GUARD_DB (--db) at another database, or drop that schema`,
      );
    return 0;
  }
  const row = c.query(`SELECT version FROM ${PG_SCHEMA}.schema_version`).rows[0];
  return row === undefined ? 0 : Number(row.version);
}

/** Why a ledger of schema `version` cannot be used by this judge-guard, or null. */
export function pgSchemaProblem(version: number, where: string): string | null {
  if (version <= PG_SCHEMA_VERSION) return null;
  return `the ledger ${where} has schema version ${version}, newer than this judge-guard understands (${PG_SCHEMA_VERSION}): upgrade judge-guard on this host (every host sharing the database must run a version that knows schema ${version}), or point JUDGE_GUARD_DB (--db) at another database`;
}

/**
 * Brings the ledger's schema to this version, once, however many hosts start at once: the
 * whole migration is one transaction holding an advisory lock, and the version is read again
 * under it. PostgreSQL's DDL is transactional, so a failed migration leaves the old schema.
 */
export function migratePostgres(c: PgConnection, where: string): void {
  c.begin(MIGRATION_LOCK);
  try {
    const version = pgSchemaVersion(c, where);
    const problem = pgSchemaProblem(version, where);
    if (problem !== null) throw new LedgerSchemaError(problem);
    if (version < PG_SCHEMA_VERSION) {
      c.query(`CREATE SCHEMA IF NOT EXISTS ${PG_SCHEMA}`);
      c.query(
        `CREATE TABLE IF NOT EXISTS ${PG_SCHEMA}.schema_version (
           one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)`,
      );
      for (let v = version; v < PG_SCHEMA_VERSION; v++) c.query(PG_MIGRATIONS[v]!);
      c.query(
        `INSERT INTO ${PG_SCHEMA}.schema_version (one, version) VALUES (true, $1)
         ON CONFLICT (one) DO UPDATE SET version = excluded.version`,
        [PG_SCHEMA_VERSION],
      );
    }
    c.commit();
  } catch (e) {
    c.rollback();
    throw e;
  }
}
