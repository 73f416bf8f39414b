import { type EvidenceStep, parseTrail } from "../detection/window.js";
import { firstDecisionId } from "./decision-ids.js";
import type {
  CostSplitSums,
  DecisionGroup,
  DecisionRange,
  DecisionSpan,
  EpisodeRow,
  EpisodeSignalRow,
  EstimateSums,
  KeyEpisodeRow,
  KeySums,
  LedgerReader,
  PeriodSums,
  SkipSums,
  TimelineSums,
  TokenSums,
} from "./reader.js";
import {
  episodeOf,
  episodeSignalOf,
  estimateSumsOf,
  groupOf,
  keySumsOf,
  periodOf,
  skipOf,
  splitOf,
  splitSql,
  timelineOf,
  tokenSumsOf,
} from "./reader-rows.js";
import { configOf, flag, num, numOrNull, type Row } from "./rows.js";
import type { GuardConfigRecord } from "./types.js";

/*
 * The reports' queries, written once for SQLite and PostgreSQL ledgers: the tables and columns
 * are the same, and a dialect says the little that each database writes its own way.
 */

/** What the SQL of one database writes its own way. */
export interface SqlDialect {
  /**
   * The SQLite schema version whose tables and columns the ledger has (ids by time from v3,
   * cost sources and guard_config from v4, episodes' trails from v5); a PostgreSQL ledger has
   * the current one's.
   */
  readonly version: number;
  /** What stands before a table's name (its schema). */
  readonly schema: string;
  /** The placeholder of the `n`th parameter, from 1. */
  param(n: number): string;
  /** How many rows of a group `cond` holds for. */
  countIf(cond: string): string;
  /** A text column as ORDER BY takes it, by its bytes whatever the database's collation. */
  bytewise(column: string): string;
  /** An aggregate read as a double. */
  double(expr: string): string;
  /** The column of `ts` in a timeline starting at `t0` of columns `step` wide (placeholders). */
  timelineColumn(t0: string, step: string): string;
  /** `column` is one of the texts bound at `list`; `listOf` is what to bind there. */
  oneOf(column: string, list: string): string;
  listOf(texts: readonly string[]): unknown;
}

/** Runs a query with its parameters, in the order {@link SqlDialect.param} numbers them. */
export type Query = (sql: string, args: readonly unknown[]) => Row[];

/** Parameters of a query, bound as its text names them. */
class Params {
  readonly values: unknown[] = [];
  readonly #d: SqlDialect;

  constructor(d: SqlDialect) {
    this.#d = d;
  }

  /** The placeholder of `v`. */
  bind(v: unknown): string {
    this.values.push(v);
    return this.#d.param(this.values.length);
  }
}

/** How many decisions the ledger holds (for one key), and the first's and last's times. */
export function spanOf(query: Query, d: SqlDialect, sessionKey?: string): DecisionSpan {
  const p = new Params(d);
  const key = sessionKey === undefined ? "" : ` WHERE session_key = ${p.bind(sessionKey)}`;
  const held = query(
    `SELECT count(*) AS n, min(ts) AS first, max(ts) AS last FROM ${d.schema}decisions${key}`,
    p.values,
  )[0]!;
  return { count: num(held.n), firstMs: numOrNull(held.first), lastMs: numOrNull(held.last) };
}

/**
 * A ledger read for reports through a connection of the subclass's (its `query`, `snapshot`
 * and `close`), in the SQL of its {@link SqlDialect}. Ranges of decisions are read by id and
 * time from schema v3 on (an id starts with its time: decision-ids.ts), through the time index
 * before.
 */
export abstract class SqlLedgerReader implements LedgerReader {
  abstract readonly location: string;
  readonly #d: SqlDialect;
  readonly #split: string;
  readonly #t: string;

  protected constructor(dialect: SqlDialect) {
    this.#d = dialect;
    this.#split = splitSql(dialect.version);
    this.#t = dialect.schema;
  }

  abstract snapshot<T>(fn: () => T): T;
  abstract close(): void;
  /** Runs a query; its errors as the reader reports them. */
  protected abstract query(sql: string, args: readonly unknown[]): Row[];

  #all(sql: string, p?: Params): Row[] {
    return this.query(sql, p?.values ?? []);
  }

  /** The filter of a range, with its parameters in `p`. */
  #where(r: DecisionRange, p: Params): string {
    const key = r.sessionKey ?? null;
    // The id bound turns the range into a range scan of the table; the ts bounds keep it exact.
    const byId = this.#d.version >= 3 ? `id >= ${p.bind(firstDecisionId(r.since))} AND ` : "";
    return `${byId}ts >= ${p.bind(r.since)} AND ts < ${p.bind(r.until)}${key === null ? "" : ` AND session_key = ${p.bind(key)}`}`;
  }

  /** A query of the decisions in range `r`: `sql` gets the filter's text and the parameters. */
  #decisions(r: DecisionRange, sql: (where: string, p: Params) => string): Row[] {
    const p = new Params(this.#d);
    const text = sql(this.#where(r, p), p);
    return this.#all(text, p);
  }

  decisionGroups(r: DecisionRange): DecisionGroup[] {
    return this.#decisions(
      r,
      (
        w,
      ) => `SELECT decision, reason, count(*) AS n, sum(charged_micros) AS charged, sum(saved_micros) AS saved
       FROM ${this.#t}decisions WHERE ${w} GROUP BY decision, reason`,
    ).map(groupOf);
  }

  costSplit(r: DecisionRange): CostSplitSums {
    return splitOf(
      this.#decisions(r, (w) => `SELECT ${this.#split} FROM ${this.#t}decisions WHERE ${w}`)[0]!,
    );
  }

  keys(r: DecisionRange): KeySums[] {
    const d = this.#d;
    return this.#decisions(
      r,
      (w) => `SELECT session_key, count(*) AS calls, ${d.countIf("decision = 'skipped'")} AS skipped,
              ${d.countIf("decision = 'failed'")} AS failed, sum(charged_micros) AS charged, sum(saved_micros) AS saved, ${this.#split}
       FROM ${this.#t}decisions WHERE ${w} GROUP BY session_key
       ORDER BY sum(charged_micros) + sum(saved_micros) DESC, ${d.bytewise("session_key")}`,
    ).map(keySumsOf);
  }

  chargedBy(column: "session_key" | "judge", r: DecisionRange): Map<string, number> {
    const rows = this.#decisions(
      r,
      (w) =>
        `SELECT ${column} AS k, sum(charged_micros) AS m FROM ${this.#t}decisions WHERE ${w} GROUP BY ${column}`,
    );
    return new Map(rows.map((x) => [String(x.k), num(x.m)]));
  }

  tokens(column: "judge" | "model", r: DecisionRange): TokenSums[] {
    return this.#decisions(
      r,
      (w) => `SELECT ${column} AS name, count(*) AS calls, sum(input_tokens) AS i, sum(output_tokens) AS o,
              sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw, sum(charged_micros) AS charged, ${this.#split}
       FROM ${this.#t}decisions WHERE ${w} AND decision != 'skipped' GROUP BY ${column}
       ORDER BY sum(charged_micros) DESC, ${this.#d.bytewise(column)}`,
    ).map(tokenSumsOf);
  }

  series(r: DecisionRange, widthMs: number): PeriodSums[] {
    // A literal, not a parameter: SQLite binds a number as a REAL, and the periods need integer
    // division. At least 1 ms: nothing divides by zero.
    const width = Math.max(1, Math.trunc(widthMs));
    return this.#decisions(
      r,
      (
        w,
      ) => `SELECT (ts / ${width}) * ${width} AS start, sum(charged_micros) AS charged, sum(saved_micros) AS saved
       FROM ${this.#t}decisions WHERE ${w} GROUP BY ts / ${width} ORDER BY start`,
    ).map(periodOf);
  }

  estimates(r: DecisionRange): EstimateSums {
    const e = this.#decisions(
      r,
      (w) => `SELECT count(*) AS n, sum(reserved_micros) AS reserved, sum(charged_micros) AS charged,
              ${this.#d.double("avg(abs(charged_micros - reserved_micros))")} AS mae
       FROM ${this.#t}decisions WHERE ${w} AND decision = 'judged' AND reserved_micros > 0`,
    )[0]!;
    return estimateSumsOf(e);
  }

  episodes(r: DecisionRange): EpisodeRow[] {
    const key = r.sessionKey ?? null;
    const p = new Params(this.#d);
    return this.#all(
      `SELECT id, session_key, fingerprint, repeats, evidence, detected_turn, started_ms, ended_ms FROM ${this.#t}episodes
       WHERE started_ms < ${p.bind(r.until)} AND (ended_ms IS NULL OR ended_ms >= ${p.bind(r.since)})${key === null ? "" : ` AND session_key = ${p.bind(key)}`}
       ORDER BY started_ms`,
      p,
    ).map((e) => ({ sessionKey: String(e.session_key), ...episodeOf(e) }));
  }

  episodeSignals(): EpisodeSignalRow[] {
    return this.#all(
      `SELECT episode_id, ts, channel, status, attempts FROM ${this.#t}signals WHERE episode_id IS NOT NULL ORDER BY id`,
    ).map(episodeSignalOf);
  }

  configs(): GuardConfigRecord[] {
    if (this.#d.version < 4) return [];
    return this.#all(`SELECT * FROM ${this.#t}guard_config ORDER BY started_ms, id`).map(configOf);
  }

  skips(r: DecisionRange): SkipSums[] {
    return this.#decisions(
      r,
      (
        w,
      ) => `SELECT judge, model, episode_id AS episode, count(*) AS n, sum(saved_micros) AS saved FROM ${this.#t}decisions
       WHERE ${w} AND decision = 'skipped' GROUP BY judge, model, episode_id`,
    ).map(skipOf);
  }

  timeline(r: DecisionRange, startMs: number, stepMs: number, keys: readonly string[]): TimelineSums[] {
    const d = this.#d;
    return this.#decisions(
      r,
      (w, p) => `SELECT session_key AS k, ${d.timelineColumn(p.bind(startMs), p.bind(stepMs))} AS c,
              ${d.countIf("decision = 'judged'")} AS j, ${d.countIf("decision = 'failed'")} AS f, ${d.countIf("decision = 'skipped'")} AS s
       FROM ${this.#t}decisions WHERE ${w} AND ${d.oneOf("session_key", p.bind(d.listOf(keys)))}
       GROUP BY k, c ORDER BY c`,
    ).map(timelineOf);
  }

  trails(episodeIds: readonly string[]): Map<string, EvidenceStep[] | null> {
    if (this.#d.version < 5) return new Map();
    const p = new Params(this.#d);
    const rows = this.#all(
      `SELECT id, trail FROM ${this.#t}episodes WHERE ${this.#d.oneOf("id", p.bind(this.#d.listOf(episodeIds)))}`,
      p,
    );
    return new Map(rows.map((r) => [String(r.id), parseTrail(r.trail)]));
  }

  keyEpisodes(sessionKey: string): Array<KeyEpisodeRow & { trail: EvidenceStep[] | null }> {
    const trail = this.#d.version >= 5 ? "trail" : "NULL AS trail";
    const p = new Params(this.#d);
    const rows = this.#all(
      `SELECT id, fingerprint, evidence, repeats, detected_turn, started_ms, ended_ms, ${trail}
       FROM ${this.#t}episodes WHERE session_key = ${p.bind(sessionKey)} ORDER BY started_ms, id`,
      p,
    );
    return rows.map((r) => ({ ...episodeOf(r), trail: parseTrail(r.trail) }));
  }

  keyStuck(sessionKey: string): boolean {
    const p = new Params(this.#d);
    const state = this.#all(
      `SELECT stuck FROM ${this.#t}key_state WHERE session_key = ${p.bind(sessionKey)}`,
      p,
    )[0];
    return state !== undefined && flag(state.stuck);
  }

  decisionSpan(sessionKey?: string): DecisionSpan {
    return spanOf((sql, args) => this.query(sql, args), this.#d, sessionKey);
  }
}
