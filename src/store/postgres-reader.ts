import { type EvidenceStep, parseTrail } from "../detection/window.js";
import { isJudgeGuardError } from "../errors.js";
import { firstDecisionId } from "./decision-ids.js";
import { SCHEMA_VERSION as SQLITE_SCHEMA_VERSION } from "./migrations.js";
import { PgConnection, redactIn, redactUrl } from "./postgres-connection.js";
import { pgSchemaProblem, pgSchemaVersion, PG_SCHEMA as S } from "./postgres-migrations.js";
import {
  type CostSplitSums,
  type DecisionGroup,
  type DecisionRange,
  type DecisionSpan,
  type EpisodeRow,
  type EpisodeSignalRow,
  type EstimateSums,
  type KeyEpisodeRow,
  type KeySums,
  LedgerReadError,
  type LedgerReader,
  type PeriodSums,
  type SkipSums,
  type TimelineSums,
  type TokenSums,
} from "./reader.js";
import {
  episodeOf,
  episodeSignalOf,
  estimateSumsOf,
  groupOf,
  keySumsOf,
  num,
  numOrNull,
  periodOf,
  type Row,
  skipOf,
  splitOf,
  splitSql,
  timelineOf,
  tokenSumsOf,
} from "./reader-rows.js";
import { configOf } from "./rows.js";
import type { GuardConfigRecord } from "./types.js";

/** Sums of the charges by source: the SQLite reader's for its current schema, whose columns this one has. */
const SPLIT = splitSql(SQLITE_SCHEMA_VERSION);

const count = (cond: string) => `count(*) FILTER (WHERE ${cond})`;

/**
 * A PostgreSQL ledger read for reports, on a connection of its own whose transactions are all
 * read-only; `snapshot` is one REPEATABLE READ transaction, so a report's sums agree with each
 * other while guards keep writing. The same queries as the SQLite reader (sqlite-reader.ts),
 * for the current schema.
 */
export class PostgresReader implements LedgerReader {
  /** The URL without its password. */
  readonly location: string;
  readonly #url: string;
  readonly #c: PgConnection;

  constructor(url: string) {
    this.#url = url;
    this.location = redactUrl(url);
    let c: PgConnection | undefined;
    try {
      c = new PgConnection(url, { readOnly: true, max: 1 });
      const version = pgSchemaVersion(c, this.location);
      const problem = pgSchemaProblem(version, this.location);
      if (problem !== null) throw new LedgerReadError(problem);
      if (version === 0)
        throw new LedgerReadError(
          `${this.location} holds no judge-guard ledger yet (no ${S} schema): is JUDGE_GUARD_DB (--db) right?`,
        );
      this.#c = c;
    } catch (e) {
      c?.close();
      throw this.#unreadable(e);
    }
  }

  #unreadable(e: unknown): LedgerReadError {
    if (e instanceof LedgerReadError) return e;
    if (isJudgeGuardError(e) && e.code === "CONFIG_INVALID") return new LedgerReadError(e.message);
    const code = String((e as { code?: unknown })?.code ?? "");
    const message = redactIn((e as Error)?.message ?? String(e), this.#url);
    const hint =
      code === "28P01" || code === "28000"
        ? "check the user and password in JUDGE_GUARD_DB (--db)"
        : code === "3D000"
          ? "the database does not exist: check JUDGE_GUARD_DB (--db)"
          : "check that the server is up and that JUDGE_GUARD_DB (--db) names it";
    return new LedgerReadError(`cannot read the PostgreSQL ledger ${this.location}: ${message}; ${hint}`);
  }

  #all(sql: string, args: readonly unknown[] = []): Row[] {
    try {
      return this.#c.query(sql, args).rows;
    } catch (e) {
      throw this.#unreadable(e);
    }
  }

  snapshot<T>(fn: () => T): T {
    if (this.#c.inTransaction) return fn();
    try {
      this.#c.begin(null, true);
    } catch (e) {
      throw this.#unreadable(e);
    }
    try {
      const out = fn();
      this.#c.commit();
      return out;
    } catch (e) {
      if (this.#c.inTransaction) this.#c.rollback();
      throw this.#unreadable(e);
    }
  }

  /** The filter of a range ($1..$n), and its parameters: more parameters follow from $n+1. */
  #where(r: DecisionRange): { sql: string; args: unknown[] } {
    const key = r.sessionKey ?? null;
    const args: unknown[] = [String(firstDecisionId(r.since)), r.since, r.until];
    let sql = "id >= $1 AND ts >= $2 AND ts < $3";
    if (key !== null) {
      args.push(key);
      sql += " AND session_key = $4";
    }
    return { sql, args };
  }

  decisionGroups(r: DecisionRange): DecisionGroup[] {
    const w = this.#where(r);
    return this.#all(
      `SELECT decision, reason, count(*) AS n, sum(charged_micros) AS charged, sum(saved_micros) AS saved
       FROM ${S}.decisions WHERE ${w.sql} GROUP BY decision, reason`,
      w.args,
    ).map(groupOf);
  }

  costSplit(r: DecisionRange): CostSplitSums {
    const w = this.#where(r);
    return splitOf(this.#all(`SELECT ${SPLIT} FROM ${S}.decisions WHERE ${w.sql}`, w.args)[0]!);
  }

  keys(r: DecisionRange): KeySums[] {
    const w = this.#where(r);
    return this.#all(
      `SELECT session_key, count(*) AS calls, ${count("decision = 'skipped'")} AS skipped,
              ${count("decision = 'failed'")} AS failed, sum(charged_micros) AS charged, sum(saved_micros) AS saved, ${SPLIT}
       FROM ${S}.decisions WHERE ${w.sql} GROUP BY session_key
       ORDER BY sum(charged_micros) + sum(saved_micros) DESC, session_key COLLATE "C"`,
      w.args,
    ).map(keySumsOf);
  }

  chargedBy(column: "session_key" | "judge", r: DecisionRange): Map<string, number> {
    const w = this.#where(r);
    const rows = this.#all(
      `SELECT ${column} AS k, sum(charged_micros) AS m FROM ${S}.decisions WHERE ${w.sql} GROUP BY ${column}`,
      w.args,
    );
    return new Map(rows.map((x) => [String(x.k), num(x.m)]));
  }

  tokens(column: "judge" | "model", r: DecisionRange): TokenSums[] {
    const w = this.#where(r);
    return this.#all(
      `SELECT ${column} AS name, count(*) AS calls, sum(input_tokens) AS i, sum(output_tokens) AS o,
              sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw, sum(charged_micros) AS charged, ${SPLIT}
       FROM ${S}.decisions WHERE ${w.sql} AND decision <> 'skipped' GROUP BY ${column}
       ORDER BY sum(charged_micros) DESC, ${column} COLLATE "C"`,
      w.args,
    ).map(tokenSumsOf);
  }

  series(r: DecisionRange, widthMs: number): PeriodSums[] {
    const w = this.#where(r);
    const width = Math.max(1, Math.trunc(widthMs));
    return this.#all(
      `SELECT (ts / ${width}) * ${width} AS start, sum(charged_micros) AS charged, sum(saved_micros) AS saved
       FROM ${S}.decisions WHERE ${w.sql} GROUP BY ts / ${width} ORDER BY start`,
      w.args,
    ).map(periodOf);
  }

  estimates(r: DecisionRange): EstimateSums {
    const w = this.#where(r);
    const e = this.#all(
      `SELECT count(*) AS n, sum(reserved_micros) AS reserved, sum(charged_micros) AS charged,
              avg(abs(charged_micros - reserved_micros))::float8 AS mae
       FROM ${S}.decisions WHERE ${w.sql} AND decision = 'judged' AND reserved_micros > 0`,
      w.args,
    )[0]!;
    return estimateSumsOf(e);
  }

  episodes(r: DecisionRange): EpisodeRow[] {
    const key = r.sessionKey ?? null;
    return this.#all(
      `SELECT id, session_key, fingerprint, repeats, evidence, detected_turn, started_ms, ended_ms FROM ${S}.episodes
       WHERE started_ms < $2 AND (ended_ms IS NULL OR ended_ms >= $1)${key === null ? "" : " AND session_key = $3"}
       ORDER BY started_ms`,
      [r.since, r.until, ...(key === null ? [] : [key])],
    ).map((e) => ({ sessionKey: String(e.session_key), ...episodeOf(e) }));
  }

  episodeSignals(): EpisodeSignalRow[] {
    return this.#all(
      `SELECT episode_id, ts, channel, status, attempts FROM ${S}.signals WHERE episode_id IS NOT NULL ORDER BY id`,
    ).map(episodeSignalOf);
  }

  configs(): GuardConfigRecord[] {
    return this.#all(`SELECT * FROM ${S}.guard_config ORDER BY started_ms, id`).map(configOf);
  }

  skips(r: DecisionRange): SkipSums[] {
    const w = this.#where(r);
    return this.#all(
      `SELECT judge, model, episode_id AS episode, count(*) AS n, sum(saved_micros) AS saved FROM ${S}.decisions
       WHERE ${w.sql} AND decision = 'skipped' GROUP BY judge, model, episode_id`,
      w.args,
    ).map(skipOf);
  }

  timeline(r: DecisionRange, startMs: number, stepMs: number, keys: readonly string[]): TimelineSums[] {
    const w = this.#where(r);
    const n = w.args.length;
    // trunc: SQLite's CAST(... AS INTEGER) of the quotient.
    return this.#all(
      `SELECT session_key AS k, trunc((ts::float8 - $${n + 1}::float8) / $${n + 2}::float8)::bigint AS c,
              ${count("decision = 'judged'")} AS j, ${count("decision = 'failed'")} AS f, ${count("decision = 'skipped'")} AS s
       FROM ${S}.decisions WHERE ${w.sql} AND session_key = ANY($${n + 3}::text[])
       GROUP BY k, c ORDER BY c`,
      [...w.args, startMs, stepMs, [...keys]],
    ).map(timelineOf);
  }

  trails(episodeIds: readonly string[]): Map<string, EvidenceStep[] | null> {
    const rows = this.#all(`SELECT id, trail FROM ${S}.episodes WHERE id = ANY($1::text[])`, [
      [...episodeIds],
    ]);
    return new Map(rows.map((r) => [String(r.id), parseTrail(r.trail)]));
  }

  keyEpisodes(sessionKey: string): Array<KeyEpisodeRow & { trail: EvidenceStep[] | null }> {
    const rows = this.#all(
      `SELECT id, fingerprint, evidence, repeats, detected_turn, started_ms, ended_ms, trail
       FROM ${S}.episodes WHERE session_key = $1 ORDER BY started_ms, id`,
      [sessionKey],
    );
    return rows.map((r) => ({ ...episodeOf(r), trail: parseTrail(r.trail) }));
  }

  keyStuck(sessionKey: string): boolean {
    const state = this.#all(`SELECT stuck FROM ${S}.key_state WHERE session_key = $1`, [sessionKey])[0];
    return state !== undefined && state.stuck === true;
  }

  decisionSpan(sessionKey?: string): DecisionSpan {
    const held = this.#all(
      `SELECT count(*) AS n, min(ts) AS first, max(ts) AS last FROM ${S}.decisions${sessionKey === undefined ? "" : " WHERE session_key = $1"}`,
      sessionKey === undefined ? [] : [sessionKey],
    )[0]!;
    return { count: num(held.n), firstMs: numOrNull(held.first), lastMs: numOrNull(held.last) };
  }

  close(): void {
    this.#c.close();
  }
}

/**
 * What the database at `url` holds, before a guard opens (and migrates) it, as `inspectLedger`
 * tells of a SQLite file: `empty` (no ledger yet), a `ledger` with its decisions, `foreign` with
 * why it cannot be used, or `unreadable` (the guard that opens it next says what is wrong).
 */
export function inspectPostgres(
  url: string,
):
  | { readonly kind: "foreign"; readonly problem: string }
  | { readonly kind: "empty" | "unreadable" }
  | { readonly kind: "ledger"; readonly decisions: DecisionSpan } {
  let reader: PostgresReader;
  try {
    reader = new PostgresReader(url);
  } catch (e) {
    const message = (e as Error).message;
    if (/holds no judge-guard ledger yet/.test(message)) return { kind: "empty" };
    if (/newer than this judge-guard|no judge-guard ledger \(no schema_version/.test(message))
      return { kind: "foreign", problem: message };
    return { kind: "unreadable" };
  }
  try {
    return { kind: "ledger", decisions: reader.decisionSpan() };
  } catch {
    return { kind: "unreadable" };
  } finally {
    reader.close();
  }
}
