import { existsSync, statSync } from "node:fs";
import type Database from "better-sqlite3";
import type { StuckEvidence } from "../detection/evidence.js";
import { DEFAULTS } from "../guard/options.js";
import { firstDecisionId } from "../store/decision-ids.js";
import { sqlite } from "../store/driver.js";
import { ledgerProblem } from "../store/migrations.js";
import { ledgerUsd } from "../util/money.js";
import { collectDetail, type ReportDetail } from "./detail.js";

/**
 * The cost report: what the guard decided over a time range, aggregated in SQL over that range
 * of the `decisions` table (keyed by time since schema v3; through its `ts` index on older
 * ledgers), read through a read-only connection so that a running guard is never blocked. Field names are stable (snake_case) and
 * are the JSON format as is; money is USD.
 */
export interface Report {
  readonly ledger: string;
  readonly range: { readonly since: string; readonly until: string };
  readonly session_key: string | null;
  readonly totals: Totals;
  readonly sessions: SessionRow[];
  readonly by_judge: TokenRow[];
  readonly by_model: TokenRow[];
  readonly series: { readonly bucket: "hour" | "day"; readonly points: SeriesPoint[] };
  readonly estimates: EstimateAccuracy;
  /** The caps the budget column is measured against, and where they were read. */
  readonly config: ReportConfig;
  /** Only with `ReportOptions.detail` (the HTML report's incident view). */
  readonly detail?: ReportDetail;
}

/**
 * Charges split by where they came from (see the ledger's `cost_source`): they add up to
 * `charged_usd`.
 */
export interface CostSplit {
  /** Charged the judge's own reported cost. */
  readonly reported_usd: number;
  /** Tokens x the price table of the same reported calls, where they gave tokens. */
  readonly reported_computed_usd: number;
  /** Charged tokens x the price table (no cost reported). */
  readonly computed_usd: number;
  /** Charged the reservation's estimate (nothing reported). */
  readonly estimated_usd: number;
  /** Charged by rows with no recorded source and no tokens (written before schema v4). */
  readonly unknown_source_usd: number;
}

/**
 * The guard configuration in force during the range: the latest recorded at or before its end
 * (`source: "ledger"`), or, for a ledger that records none, the report's own environment.
 */
export interface ReportConfig {
  readonly source: "ledger" | "environment";
  /** When the configuration shown was recorded (a guard started); null from the environment. */
  readonly recorded: string | null;
  readonly mode: string | null;
  readonly session_budget_usd: number | null;
  readonly session_max_calls: number | null;
  readonly budget_window_ms: number;
  readonly daily_budget_usd: number | null;
  /** The cap of every judge kind not named below, per 24 h (null: none). */
  readonly judge_budget_usd: number | null;
  /** Caps of named judge kinds per 24 h (null: that kind has none); null when none is named. */
  readonly judge_budgets_usd: Record<string, number | null> | null;
  /** Fields whose value differed between configurations in force during the range; the latest is shown. */
  readonly changed: string[];
}

export interface Totals extends CostSplit {
  readonly calls_judged: number;
  readonly calls_failed: number;
  readonly calls_skipped: number;
  readonly skipped_by_reason: Record<string, number>;
  readonly charged_usd: number;
  readonly saved_usd: number;
  readonly saved_by_reason: Record<string, number>;
  /** What the same traffic would have cost with no guard: charged plus saved. */
  readonly unguarded_usd: number;
  /** Judged and failed calls by where their charge came from. */
  readonly calls_by_cost_source: {
    readonly reported: number;
    readonly computed: number;
    readonly estimate: number;
    readonly unknown: number;
  };
}

export interface EpisodeRow {
  readonly episode_id: string;
  readonly started: string;
  /** null while the session is still stuck. */
  readonly ended: string | null;
  readonly fingerprint: string;
  readonly repeats: number;
  /** What it was opened on: a known canned line, replies at no cost, or repeats. */
  readonly evidence: StuckEvidence;
  /** 1-based index of the reply at which it was detected. */
  readonly detected_turn: number;
  readonly signals: Array<{
    /** When the signal was sent (its last attempt). */
    readonly ts: string;
    readonly channel: string;
    readonly status: string;
    readonly attempts: number;
  }>;
}

export interface SessionRow extends CostSplit {
  readonly session_key: string;
  /** Every decision on the key: judged, failed and skipped. */
  readonly calls: number;
  readonly skipped: number;
  /** Calls whose judge ran and threw (counted as judged in the table, as in the totals' headline). */
  readonly failed: number;
  readonly charged_usd: number;
  readonly saved_usd: number;
  /** Spend in the budget window that ends at the range's end, against the per-key cap. */
  readonly budget: { readonly used_usd: number; readonly cap_usd: number | null };
  readonly episodes: EpisodeRow[];
}

export interface TokenRow extends CostSplit {
  readonly name: string;
  /**
   * Per judge kind, when the guard capped judge kinds: its spend in the 24 h that end at the
   * range's end, against its cap (null: this kind has none).
   */
  readonly budget?: { readonly used_usd: number; readonly cap_usd: number | null };
  readonly calls: number;
  readonly input_tokens: number;
  readonly output_tokens: number;
  readonly cache_read_tokens: number;
  readonly cache_write_tokens: number;
  readonly charged_usd: number;
}

export interface SeriesPoint {
  readonly start: string;
  readonly charged_usd: number;
  readonly saved_usd: number;
}

/** How far reservations (estimates made before a call) were from what calls really cost. */
export interface EstimateAccuracy {
  readonly calls: number;
  readonly reserved_usd: number;
  readonly charged_usd: number;
  /** Charged over reserved: below 1, estimates were pessimistic. */
  readonly ratio: number | null;
  readonly mean_abs_error_usd: number | null;
}

/** A problem with the ledger or the data (exit status 1). */
export class ReportDataError extends Error {
  override readonly name = "ReportDataError";
}

export interface ReportOptions {
  readonly since: number;
  readonly until: number;
  readonly sessionKey?: string | undefined;
  /**
   * The per-key cap and its rolling window, to show each key's budget use at `until`, when the
   * ledger records no guard configuration (written before schema v4): the caller's environment.
   */
  readonly sessionBudgetUsd?: number;
  readonly budgetWindowMs?: number;
  /** Width of the series' periods. @default hours for ranges up to two days, days beyond */
  readonly bucket?: "hour" | "day";
  /** Also read what an incident review needs (see {@link ReportDetail}). @default false */
  readonly detail?: boolean;
}

/** Sums, per group, of the charges by source (the columns `split` reads back). */
function splitSql(version: number): string {
  // Rows with tokens and no recorded source (before v4, or from an older process still
  // writing) were charged tokens x price: that was the only use of tokens then.
  const tokens =
    "(decision != 'skipped' AND input_tokens + output_tokens + cache_read_tokens + cache_write_tokens > 0)";
  const legacy = `CASE WHEN ${tokens} THEN 'computed' END`;
  const src = version >= 4 ? `coalesce(cost_source, ${legacy})` : `(${legacy})`;
  const computed =
    version >= 4
      ? `coalesce(computed_micros, CASE WHEN cost_source IS NULL AND ${tokens} THEN charged_micros END)`
      : `(CASE WHEN ${tokens} THEN charged_micros END)`;
  const by = (source: string, what = "charged_micros") =>
    `coalesce(sum(CASE WHEN ${src} = '${source}' THEN ${what} END), 0)`;
  return `${by("reported")} AS s_rep, ${by("reported", computed)} AS s_rep_comp, ${by("computed")} AS s_comp,
    ${by("estimate")} AS s_est, coalesce(sum(CASE WHEN ${src} IS NULL THEN charged_micros END), 0) AS s_unk,
    ${by("reported", "1")} AS n_rep, ${by("computed", "1")} AS n_comp, ${by("estimate", "1")} AS n_est,
    coalesce(sum(CASE WHEN ${src} IS NULL AND decision != 'skipped' THEN 1 END), 0) AS n_unk`;
}

interface SplitColumns {
  s_rep: number;
  s_rep_comp: number;
  s_comp: number;
  s_est: number;
  s_unk: number;
  n_rep: number;
  n_comp: number;
  n_est: number;
  n_unk: number;
}

const split = (r: SplitColumns): CostSplit => ({
  reported_usd: ledgerUsd(r.s_rep),
  reported_computed_usd: ledgerUsd(r.s_rep_comp),
  computed_usd: ledgerUsd(r.s_comp),
  estimated_usd: ledgerUsd(r.s_est),
  unknown_source_usd: ledgerUsd(r.s_unk),
});

/** The configuration in force during [since, until], from the ledger's `guard_config`. */
function configOf(db: Database.Database, version: number, o: ReportOptions): ReportConfig {
  const rows =
    version >= 4
      ? (db.prepare("SELECT * FROM guard_config ORDER BY started_ms, id").all() as Array<{
          started_ms: number;
          mode: string;
          session_budget_micros: number | null;
          session_max_calls: number | null;
          budget_window_ms: number;
          daily_budget_micros: number | null;
          judge_budget_micros?: number | null;
          judge_budgets?: string | null;
        }>)
      : [];
  if (rows.length === 0) {
    const cap = o.sessionBudgetUsd;
    return {
      source: "environment",
      recorded: null,
      mode: null,
      session_budget_usd: cap === undefined || cap === Infinity ? null : cap,
      session_max_calls: null,
      budget_window_ms: o.budgetWindowMs ?? DEFAULTS.budgetWindowMs,
      daily_budget_usd: null,
      judge_budget_usd: null,
      judge_budgets_usd: null,
      changed: [],
    };
  }
  // In force during the range: the latest at or before its start, and every one started in it.
  // With none at or before its end (the range precedes every record), the earliest.
  let first = 0;
  for (let i = 0; i < rows.length; i++) if (rows[i]!.started_ms <= o.since) first = i;
  let last = first;
  for (let i = first; i < rows.length; i++) if (rows[i]!.started_ms <= o.until) last = i;
  const during = rows.slice(first, last + 1);
  const shown = rows[last]!;
  const money = (m: number | null) => (m === null ? null : ledgerUsd(m));
  const fields: Record<string, (r: typeof shown) => string | number | null> = {
    mode: (r) => r.mode,
    session_budget_usd: (r) => r.session_budget_micros,
    session_max_calls: (r) => r.session_max_calls,
    budget_window_ms: (r) => r.budget_window_ms,
    daily_budget_usd: (r) => r.daily_budget_micros,
    judge_budget_usd: (r) => r.judge_budget_micros ?? null,
    judge_budgets_usd: (r) => r.judge_budgets ?? null,
  };
  const changed = Object.entries(fields)
    .filter(([, get]) => new Set(during.map(get)).size > 1)
    .map(([name]) => name);
  return {
    source: "ledger",
    recorded: iso(shown.started_ms),
    mode: shown.mode,
    session_budget_usd: money(shown.session_budget_micros),
    session_max_calls: shown.session_max_calls,
    budget_window_ms: shown.budget_window_ms,
    daily_budget_usd: money(shown.daily_budget_micros),
    judge_budget_usd: money(shown.judge_budget_micros ?? null),
    judge_budgets_usd:
      typeof shown.judge_budgets === "string"
        ? Object.fromEntries(
            Object.entries(JSON.parse(shown.judge_budgets) as Record<string, number | null>).map(([j, m]) => [
              j,
              money(m),
            ]),
          )
        : null,
    changed,
  };
}
const iso = (ms: number): string => new Date(ms).toISOString();

/** Opens a ledger read-only for reading, or throws a ReportDataError saying what is wrong. */
export function openForReading(path: string): Database.Database {
  if (!existsSync(path)) throw new ReportDataError(`no ledger at ${path} (set --db or JUDGE_GUARD_DB)`);
  if (statSync(path).isDirectory())
    throw new ReportDataError(
      `${path} is a folder, not a ledger (set --db or JUDGE_GUARD_DB to the ledger file)`,
    );
  let db: Database.Database;
  try {
    db = new (sqlite())(path, { readonly: true, fileMustExist: true });
  } catch (e) {
    throw new ReportDataError(`cannot open the ledger ${path}: ${(e as Error).message}`);
  }
  try {
    const problem = ledgerProblem(db, path);
    if (problem !== null) throw new ReportDataError(problem);
    if (Number(db.pragma("user_version", { simple: true })) === 0)
      throw new ReportDataError(`${path} is not a judge-guard ledger (no schema): is --db right?`);
    db.pragma("busy_timeout = 2000");
    return db;
  } catch (e) {
    db.close();
    throw e instanceof ReportDataError
      ? e
      : new ReportDataError(`cannot read the ledger ${path}: ${(e as Error).message}`);
  }
}

/** Builds the report for one time range (and optionally one session key). */
export function buildReport(path: string, o: ReportOptions): Report {
  const db = openForReading(path);
  try {
    return db.transaction(() => collect(db, path, o))();
  } catch (e) {
    throw e instanceof ReportDataError
      ? e
      : new ReportDataError(`cannot read the ledger ${path}: ${(e as Error).message}`);
  } finally {
    db.close();
  }
}

function collect(db: Database.Database, path: string, o: ReportOptions): Report {
  const key = o.sessionKey ?? null;
  // One filter for every query: the time range, and the key when one is asked for.
  // Since schema v3 a decision's id starts with its time (decision-ids.ts): the id bound turns
  // the range into a range scan of the table, the ts bounds keep it exact.
  const version = Number(db.pragma("user_version", { simple: true }));
  const byId = version >= 3;
  const splits = splitSql(version);
  const from = (param: string) => `${byId ? `id >= ${param}Id AND ` : ""}ts >= ${param}`;
  const keyOnly = key === null ? "" : " AND session_key = @key";
  const where = `${from("@since")} AND ts < @until${keyOnly}`;
  const args = {
    since: o.since,
    until: o.until,
    ...(byId ? { sinceId: firstDecisionId(o.since) } : {}),
    ...(key === null ? {} : { key }),
  };

  const byDecision = db
    .prepare(
      `SELECT decision, reason, count(*) AS n, sum(charged_micros) AS charged, sum(saved_micros) AS saved
       FROM decisions WHERE ${where} GROUP BY decision, reason`,
    )
    .all(args) as Array<{
    decision: string;
    reason: string | null;
    n: number;
    charged: number;
    saved: number;
  }>;
  const bySource = db.prepare(`SELECT ${splits} FROM decisions WHERE ${where}`).get(args) as SplitColumns;
  const skippedByReason: Record<string, number> = {};
  const savedByReason: Record<string, number> = {};
  let judged = 0;
  let failed = 0;
  let skipped = 0;
  let charged = 0;
  let saved = 0;
  for (const r of byDecision) {
    charged += Number(r.charged ?? 0);
    saved += Number(r.saved ?? 0);
    if (r.decision === "judged") judged += r.n;
    else if (r.decision === "failed") failed += r.n;
    else {
      skipped += r.n;
      const reason = r.reason ?? "unknown";
      skippedByReason[reason] = (skippedByReason[reason] ?? 0) + r.n;
      savedByReason[reason] = ledgerUsd(r.saved);
    }
  }

  const sessionRows = db
    .prepare(
      `SELECT session_key, count(*) AS calls, sum(decision = 'skipped') AS skipped, sum(decision = 'failed') AS failed,
              sum(charged_micros) AS charged, sum(saved_micros) AS saved, ${splits}
       FROM decisions WHERE ${where} GROUP BY session_key ORDER BY sum(charged_micros) + sum(saved_micros) DESC, session_key`,
    )
    .all(args) as Array<
    {
      session_key: string;
      calls: number;
      skipped: number;
      failed: number;
      charged: number;
      saved: number;
    } & SplitColumns
  >;
  const episodes = db
    .prepare(
      `SELECT id, session_key, fingerprint, repeats, evidence, detected_turn, started_ms, ended_ms FROM episodes
       WHERE started_ms < @until AND (ended_ms IS NULL OR ended_ms >= @since)${key === null ? "" : " AND session_key = @key"}
       ORDER BY started_ms`,
    )
    .all(args) as Array<{
    id: string;
    session_key: string;
    fingerprint: string;
    repeats: number;
    evidence: StuckEvidence;
    detected_turn: number;
    started_ms: number;
    ended_ms: number | null;
  }>;
  // One pass over the signals (a few rows per episode), not one query per episode.
  const signalsByEpisode = new Map<string, EpisodeRow["signals"][number][]>();
  if (episodes.length > 0) {
    const rows = db
      .prepare(
        "SELECT episode_id, ts, channel, status, attempts FROM signals WHERE episode_id IS NOT NULL ORDER BY id",
      )
      .all() as Array<{ episode_id: string; ts: number; channel: string; status: string; attempts: number }>;
    for (const { episode_id, ts, ...signal } of rows) {
      const list = signalsByEpisode.get(episode_id) ?? [];
      list.push({ ts: iso(ts), ...signal });
      signalsByEpisode.set(episode_id, list);
    }
  }
  const episodesByKey = new Map<string, EpisodeRow[]>();
  for (const e of episodes) {
    const list = episodesByKey.get(e.session_key) ?? [];
    list.push({
      episode_id: e.id,
      started: iso(e.started_ms),
      ended: e.ended_ms === null ? null : iso(e.ended_ms),
      fingerprint: e.fingerprint,
      repeats: e.repeats,
      evidence: e.evidence,
      detected_turn: e.detected_turn,
      signals: signalsByEpisode.get(e.id) ?? [],
    });
    episodesByKey.set(e.session_key, list);
  }
  // The caps of the guard that made the decisions, not of whoever runs the report.
  const config = configOf(db, version, o);
  const windowMs = config.budget_window_ms;
  const cap = config.session_budget_usd;
  const used = new Map(
    (
      db
        .prepare(
          `SELECT session_key AS k, sum(charged_micros) AS m FROM decisions
           WHERE ${from("@from")} AND ts < @until${keyOnly} GROUP BY session_key`,
        )
        .all({
          ...args,
          from: o.until - windowMs,
          ...(byId ? { fromId: firstDecisionId(o.until - windowMs) } : {}),
        }) as Array<{ k: string; m: number }>
    ).map((r) => [r.k, ledgerUsd(r.m)]),
  );
  const sessions: SessionRow[] = sessionRows.map((r) => ({
    session_key: r.session_key,
    calls: r.calls,
    skipped: Number(r.skipped ?? 0),
    failed: Number(r.failed ?? 0),
    charged_usd: ledgerUsd(r.charged),
    ...split(r),
    saved_usd: ledgerUsd(r.saved),
    budget: { used_usd: used.get(r.session_key) ?? 0, cap_usd: cap },
    episodes: episodesByKey.get(r.session_key) ?? [],
  }));

  // Per judge kind, when the guard capped judge kinds: spend in the 24 h ending at the range's
  // end, all keys together (the cap's scope), whatever key the report is narrowed to.
  const judgeCap = (judge: string): number | null =>
    config.judge_budgets_usd !== null && Object.hasOwn(config.judge_budgets_usd, judge)
      ? config.judge_budgets_usd[judge]!
      : config.judge_budget_usd;
  const judgesCapped =
    config.judge_budget_usd !== null ||
    Object.values(config.judge_budgets_usd ?? {}).some((cap) => cap !== null);
  const judgeUsed = judgesCapped
    ? new Map(
        (
          db
            .prepare(
              `SELECT judge AS k, sum(charged_micros) AS m FROM decisions
               WHERE ${from("@from")} AND ts < @until GROUP BY judge`,
            )
            .all({
              ...args,
              from: o.until - 86_400_000,
              ...(byId ? { fromId: firstDecisionId(o.until - 86_400_000) } : {}),
            }) as Array<{ k: string; m: number }>
        ).map((r) => [r.k, ledgerUsd(r.m)]),
      )
    : undefined;

  const tokens = (column: "judge" | "model"): TokenRow[] =>
    (
      db
        .prepare(
          `SELECT ${column} AS name, count(*) AS calls, sum(input_tokens) AS i, sum(output_tokens) AS o,
                  sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw, sum(charged_micros) AS charged,
                  ${splits}
           FROM decisions WHERE ${where} AND decision != 'skipped' GROUP BY ${column} ORDER BY sum(charged_micros) DESC, ${column}`,
        )
        .all(args) as Array<
        {
          name: string;
          calls: number;
          i: number;
          o: number;
          cr: number;
          cw: number;
          charged: number;
        } & SplitColumns
      >
    ).map((r) => ({
      name: r.name,
      calls: r.calls,
      input_tokens: Number(r.i ?? 0),
      output_tokens: Number(r.o ?? 0),
      cache_read_tokens: Number(r.cr ?? 0),
      cache_write_tokens: Number(r.cw ?? 0),
      charged_usd: ledgerUsd(r.charged),
      ...split(r),
      ...(column === "judge" &&
        judgeUsed !== undefined && {
          budget: { used_usd: judgeUsed.get(r.name) ?? 0, cap_usd: judgeCap(r.name) },
        }),
    }));

  // Hours for ranges up to two days, days beyond, unless asked.
  const bucket = o.bucket ?? (o.until - o.since <= 2 * 86_400_000 ? "hour" : "day");
  const width = bucket === "hour" ? 3_600_000 : 86_400_000;
  const points = (
    db
      .prepare(
        `SELECT (ts / ${width}) * ${width} AS start, sum(charged_micros) AS charged, sum(saved_micros) AS saved
         FROM decisions WHERE ${where} GROUP BY ts / ${width} ORDER BY start`,
      )
      .all(args) as Array<{ start: number; charged: number; saved: number }>
  ).map((p) => ({
    start: iso(Number(p.start)),
    charged_usd: ledgerUsd(p.charged),
    saved_usd: ledgerUsd(p.saved),
  }));

  const est = db
    .prepare(
      `SELECT count(*) AS n, sum(reserved_micros) AS reserved, sum(charged_micros) AS charged,
              avg(abs(charged_micros - reserved_micros)) AS mae
       FROM decisions WHERE ${where} AND decision = 'judged' AND reserved_micros > 0`,
    )
    .get(args) as { n: number; reserved: number | null; charged: number | null; mae: number | null };

  return {
    ledger: path,
    range: { since: iso(o.since), until: iso(o.until) },
    session_key: key,
    totals: {
      calls_judged: judged,
      calls_failed: failed,
      calls_skipped: skipped,
      skipped_by_reason: skippedByReason,
      charged_usd: ledgerUsd(charged),
      ...split(bySource),
      calls_by_cost_source: {
        reported: Number(bySource.n_rep),
        computed: Number(bySource.n_comp),
        estimate: Number(bySource.n_est),
        unknown: Number(bySource.n_unk),
      },
      saved_usd: ledgerUsd(saved),
      saved_by_reason: savedByReason,
      unguarded_usd: ledgerUsd(charged + saved),
    },
    sessions,
    by_judge: tokens("judge"),
    by_model: tokens("model"),
    series: { bucket, points },
    estimates: {
      calls: est.n,
      reserved_usd: ledgerUsd(est.reserved),
      charged_usd: ledgerUsd(est.charged),
      ratio: est.reserved
        ? Math.round((Number(est.charged ?? 0) / Number(est.reserved)) * 1000) / 1000
        : null,
      mean_abs_error_usd: est.mae === null ? null : ledgerUsd(est.mae),
    },
    config,
    ...(o.detail && {
      detail: collectDetail(
        db,
        { where, args, version },
        {
          sessions,
          span:
            points.length === 0
              ? null
              : { first: Date.parse(points[0]!.start), last: Date.parse(points.at(-1)!.start), width },
        },
      ),
    }),
  };
}
