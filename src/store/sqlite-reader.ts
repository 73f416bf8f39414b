import { existsSync, statSync } from "node:fs";
import type Database from "better-sqlite3";
import { type EvidenceStep, parseTrail } from "../detection/window.js";
import { firstDecisionId } from "./decision-ids.js";
import { sqlite } from "./driver.js";
import { ledgerProblem } from "./migrations.js";
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

/** How many decisions the ledger holds (for one key), and the first's and last's times. */
function spanOf(db: Database.Database, sessionKey?: string): DecisionSpan {
  const key = sessionKey === undefined ? "" : " WHERE session_key = ?";
  const held = db
    .prepare(`SELECT count(*) AS n, min(ts) AS first, max(ts) AS last FROM decisions${key}`)
    .get(...(sessionKey === undefined ? [] : [sessionKey])) as Row;
  return { count: num(held.n), firstMs: numOrNull(held.first), lastMs: numOrNull(held.last) };
}

/**
 * Opens the ledger at `path` read-only, or throws a {@link LedgerReadError} saying what is wrong:
 * missing, a folder, not a ledger, a newer schema, no schema yet.
 */
function openReadOnly(path: string): Database.Database {
  if (!existsSync(path)) throw new LedgerReadError(`no ledger at ${path} (set --db or JUDGE_GUARD_DB)`);
  if (statSync(path).isDirectory())
    throw new LedgerReadError(
      `${path} is a folder, not a ledger (set --db or JUDGE_GUARD_DB to the ledger file)`,
    );
  let db: Database.Database;
  try {
    db = new (sqlite())(path, { readonly: true, fileMustExist: true });
  } catch (e) {
    throw new LedgerReadError(`cannot open the ledger ${path}: ${(e as Error).message}`);
  }
  try {
    const problem = ledgerProblem(db, path);
    if (problem !== null) throw new LedgerReadError(problem);
    if (Number(db.pragma("user_version", { simple: true })) === 0)
      throw new LedgerReadError(`${path} is not a judge-guard ledger (no schema): is --db right?`);
    db.pragma("busy_timeout = 2000");
    return db;
  } catch (e) {
    db.close();
    throw unreadable(path, e);
  }
}

function unreadable(path: string, e: unknown): LedgerReadError {
  return e instanceof LedgerReadError
    ? e
    : new LedgerReadError(`cannot read the ledger ${path}: ${(e as Error).message}`);
}

/**
 * A ledger file read through a read-only connection of its own, so that a running guard is never
 * blocked. Ranges of decisions are read by id and time since schema v3 (an id starts with its
 * time: decision-ids.ts), through the time index before.
 */
export class SqliteReader implements LedgerReader {
  readonly location: string;
  readonly #db: Database.Database;
  readonly #version: number;
  readonly #split: string;

  constructor(path: string) {
    this.location = path;
    this.#db = openReadOnly(path);
    this.#version = Number(this.#db.pragma("user_version", { simple: true }));
    this.#split = splitSql(this.#version);
  }

  snapshot<T>(fn: () => T): T {
    try {
      return this.#db.transaction(fn)();
    } catch (e) {
      throw unreadable(this.location, e);
    }
  }

  /** The filter of a range, and the parameters it names. */
  #where(r: DecisionRange): { sql: string; args: Record<string, unknown> } {
    const byId = this.#version >= 3;
    const key = r.sessionKey ?? null;
    // The id bound turns the range into a range scan of the table; the ts bounds keep it exact.
    const sql = `${byId ? "id >= @sinceId AND " : ""}ts >= @since AND ts < @until${key === null ? "" : " AND session_key = @key"}`;
    const args = {
      since: r.since,
      until: r.until,
      ...(byId && { sinceId: firstDecisionId(r.since) }),
      ...(key !== null && { key }),
    };
    return { sql, args };
  }

  #all(sql: string, args: unknown = {}): Row[] {
    return this.#db.prepare(sql).all(args) as Row[];
  }

  decisionGroups(r: DecisionRange): DecisionGroup[] {
    const w = this.#where(r);
    return this.#all(
      `SELECT decision, reason, count(*) AS n, sum(charged_micros) AS charged, sum(saved_micros) AS saved
       FROM decisions WHERE ${w.sql} GROUP BY decision, reason`,
      w.args,
    ).map(groupOf);
  }

  costSplit(r: DecisionRange): CostSplitSums {
    const w = this.#where(r);
    return splitOf(this.#all(`SELECT ${this.#split} FROM decisions WHERE ${w.sql}`, w.args)[0]!);
  }

  keys(r: DecisionRange): KeySums[] {
    const w = this.#where(r);
    return this.#all(
      `SELECT session_key, count(*) AS calls, sum(decision = 'skipped') AS skipped, sum(decision = 'failed') AS failed,
              sum(charged_micros) AS charged, sum(saved_micros) AS saved, ${this.#split}
       FROM decisions WHERE ${w.sql} GROUP BY session_key ORDER BY sum(charged_micros) + sum(saved_micros) DESC, session_key`,
      w.args,
    ).map(keySumsOf);
  }

  chargedBy(column: "session_key" | "judge", r: DecisionRange): Map<string, number> {
    const w = this.#where(r);
    const rows = this.#all(
      `SELECT ${column} AS k, sum(charged_micros) AS m FROM decisions WHERE ${w.sql} GROUP BY ${column}`,
      w.args,
    );
    return new Map(rows.map((x) => [String(x.k), num(x.m)]));
  }

  tokens(column: "judge" | "model", r: DecisionRange): TokenSums[] {
    const w = this.#where(r);
    return this.#all(
      `SELECT ${column} AS name, count(*) AS calls, sum(input_tokens) AS i, sum(output_tokens) AS o,
              sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw, sum(charged_micros) AS charged,
              ${this.#split}
       FROM decisions WHERE ${w.sql} AND decision != 'skipped' GROUP BY ${column} ORDER BY sum(charged_micros) DESC, ${column}`,
      w.args,
    ).map(tokenSumsOf);
  }

  series(r: DecisionRange, widthMs: number): PeriodSums[] {
    const w = this.#where(r);
    // A literal, not a parameter: a bound number is a REAL, and the periods need integer division.
    const width = Math.trunc(widthMs);
    return this.#all(
      `SELECT (ts / ${width}) * ${width} AS start, sum(charged_micros) AS charged, sum(saved_micros) AS saved
       FROM decisions WHERE ${w.sql} GROUP BY ts / ${width} ORDER BY start`,
      w.args,
    ).map(periodOf);
  }

  estimates(r: DecisionRange): EstimateSums {
    const w = this.#where(r);
    const e = this.#all(
      `SELECT count(*) AS n, sum(reserved_micros) AS reserved, sum(charged_micros) AS charged,
              avg(abs(charged_micros - reserved_micros)) AS mae
       FROM decisions WHERE ${w.sql} AND decision = 'judged' AND reserved_micros > 0`,
      w.args,
    )[0]!;
    return estimateSumsOf(e);
  }

  episodes(r: DecisionRange): EpisodeRow[] {
    const key = r.sessionKey ?? null;
    return this.#all(
      `SELECT id, session_key, fingerprint, repeats, evidence, detected_turn, started_ms, ended_ms FROM episodes
       WHERE started_ms < @until AND (ended_ms IS NULL OR ended_ms >= @since)${key === null ? "" : " AND session_key = @key"}
       ORDER BY started_ms`,
      { since: r.since, until: r.until, ...(key !== null && { key }) },
    ).map((e) => ({ sessionKey: String(e.session_key), ...episodeOf(e) }));
  }

  episodeSignals(): EpisodeSignalRow[] {
    return this.#all(
      "SELECT episode_id, ts, channel, status, attempts FROM signals WHERE episode_id IS NOT NULL ORDER BY id",
    ).map(episodeSignalOf);
  }

  configs(): GuardConfigRecord[] {
    if (this.#version < 4) return [];
    return this.#all("SELECT * FROM guard_config ORDER BY started_ms, id").map(configOf);
  }

  skips(r: DecisionRange): SkipSums[] {
    const w = this.#where(r);
    return this.#all(
      `SELECT judge, model, episode_id AS episode, count(*) AS n, sum(saved_micros) AS saved FROM decisions
       WHERE ${w.sql} AND decision = 'skipped' GROUP BY judge, model, episode_id`,
      w.args,
    ).map(skipOf);
  }

  timeline(r: DecisionRange, startMs: number, stepMs: number, keys: readonly string[]): TimelineSums[] {
    const w = this.#where(r);
    return this.#all(
      `SELECT session_key AS k, CAST((ts - @t0) / @step AS INTEGER) AS c, sum(decision = 'judged') AS j,
              sum(decision = 'failed') AS f, sum(decision = 'skipped') AS s
       FROM decisions WHERE ${w.sql} AND session_key IN (SELECT value FROM json_each(@keys))
       GROUP BY k, c ORDER BY c`,
      { ...w.args, t0: startMs, step: stepMs, keys: JSON.stringify(keys) },
    ).map(timelineOf);
  }

  trails(episodeIds: readonly string[]): Map<string, EvidenceStep[] | null> {
    if (this.#version < 5) return new Map();
    const rows = this.#db
      .prepare("SELECT id, trail FROM episodes WHERE id IN (SELECT value FROM json_each(?))")
      .all(JSON.stringify(episodeIds)) as Row[];
    return new Map(rows.map((r) => [String(r.id), parseTrail(r.trail)]));
  }

  keyEpisodes(sessionKey: string): Array<KeyEpisodeRow & { trail: EvidenceStep[] | null }> {
    const trail = this.#version >= 5 ? "trail" : "NULL AS trail";
    const rows = this.#db
      .prepare(
        `SELECT id, fingerprint, evidence, repeats, detected_turn, started_ms, ended_ms, ${trail}
         FROM episodes WHERE session_key = ? ORDER BY started_ms, id`,
      )
      .all(sessionKey) as Row[];
    return rows.map((r) => ({ ...episodeOf(r), trail: parseTrail(r.trail) }));
  }

  keyStuck(sessionKey: string): boolean {
    const state = this.#db.prepare("SELECT stuck FROM key_state WHERE session_key = ?").get(sessionKey) as
      | Row
      | undefined;
    return state !== undefined && Number(state.stuck) === 1;
  }

  decisionSpan(sessionKey?: string): DecisionSpan {
    return spanOf(this.#db, sessionKey);
  }

  close(): void {
    this.#db.close();
  }
}

/**
 * What the file at `path` holds, before a guard opens (and migrates) it: `foreign` with why it is
 * no ledger, `not-sqlite`, `empty` (no schema yet), or a `ledger` with its decisions.
 * `unreadable`: it cannot be read now (a lock, a fault), and the guard that opens it next says
 * what is wrong.
 */
export function inspectLedger(
  path: string,
):
  | { readonly kind: "foreign"; readonly problem: string }
  | { readonly kind: "not-sqlite" | "empty" | "unreadable" }
  | { readonly kind: "ledger"; readonly decisions: DecisionSpan } {
  let db: Database.Database;
  try {
    db = new (sqlite())(path, { readonly: true, fileMustExist: true });
  } catch {
    return { kind: "unreadable" };
  }
  try {
    const problem = ledgerProblem(db, path);
    if (problem !== null) return { kind: "foreign", problem };
    if (Number(db.pragma("user_version", { simple: true })) === 0) return { kind: "empty" };
    return { kind: "ledger", decisions: spanOf(db) };
  } catch (e) {
    return { kind: (e as { code?: string }).code === "SQLITE_NOTADB" ? "not-sqlite" : "unreadable" };
  } finally {
    db.close();
  }
}
