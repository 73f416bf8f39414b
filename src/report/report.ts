import type { StuckEvidence } from "../detection/evidence.js";
import { DEFAULTS } from "../guard/options.js";
import { judgeBudgetsText } from "../store/guard-config.js";
import { openReader } from "../store/open.js";
import type { CostSplitSums, DecisionRange, LedgerReader } from "../store/reader.js";
import type { GuardConfigRecord } from "../store/types.js";
import { ledgerUsd } from "../util/money.js";
import { collectDetail, type ReportDetail } from "./detail.js";

/**
 * The cost report: what the guard decided over a time range, read from the ledger through a
 * `LedgerReader` (sums over that range of decisions, without blocking a running guard) and
 * shaped here. Field names are stable (snake_case) and are the JSON format as is; money is USD.
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

const split = (r: CostSplitSums): CostSplit => ({
  reported_usd: ledgerUsd(r.reportedMicros),
  reported_computed_usd: ledgerUsd(r.reportedComputedMicros),
  computed_usd: ledgerUsd(r.computedMicros),
  estimated_usd: ledgerUsd(r.estimatedMicros),
  unknown_source_usd: ledgerUsd(r.unknownMicros),
});

const iso = (ms: number): string => new Date(ms).toISOString();

/** The configuration in force during [since, until], from what the guards recorded. */
function configOf(rows: readonly GuardConfigRecord[], o: ReportOptions): ReportConfig {
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
  for (let i = 0; i < rows.length; i++) if (rows[i]!.startedMs <= o.since) first = i;
  let last = first;
  for (let i = first; i < rows.length; i++) if (rows[i]!.startedMs <= o.until) last = i;
  const during = rows.slice(first, last + 1);
  const shown = rows[last]!;
  const money = (m: number | null | undefined) => (m == null ? null : ledgerUsd(m));
  const fields: Record<string, (r: GuardConfigRecord) => string | number | null> = {
    mode: (r) => r.mode,
    session_budget_usd: (r) => r.sessionBudgetMicros,
    session_max_calls: (r) => r.sessionMaxCalls,
    budget_window_ms: (r) => r.budgetWindowMs,
    daily_budget_usd: (r) => r.dailyBudgetMicros,
    judge_budget_usd: (r) => r.judgeBudgetMicros ?? null,
    judge_budgets_usd: judgeBudgetsText,
  };
  const changed = Object.entries(fields)
    .filter(([, get]) => new Set(during.map(get)).size > 1)
    .map(([name]) => name);
  const named = shown.judgeBudgets;
  return {
    source: "ledger",
    recorded: iso(shown.startedMs),
    mode: shown.mode,
    session_budget_usd: money(shown.sessionBudgetMicros),
    session_max_calls: shown.sessionMaxCalls,
    budget_window_ms: shown.budgetWindowMs,
    daily_budget_usd: money(shown.dailyBudgetMicros),
    judge_budget_usd: money(shown.judgeBudgetMicros),
    judge_budgets_usd:
      named == null ? null : Object.fromEntries(Object.entries(named).map(([j, m]) => [j, money(m)])),
    changed,
  };
}

/** Builds the report for one time range (and optionally one session key). */
export function buildReport(path: string, o: ReportOptions): Report {
  const reader = openReader(path);
  try {
    return reader.snapshot(() => collect(reader, o));
  } finally {
    reader.close();
  }
}

function collect(reader: LedgerReader, o: ReportOptions): Report {
  const key = o.sessionKey ?? null;
  // One range for every read: the time range, and the key when one is asked for.
  const range: DecisionRange = { since: o.since, until: o.until, sessionKey: key };
  const bySource = reader.costSplit(range);
  const skippedByReason: Record<string, number> = {};
  const savedByReason: Record<string, number> = {};
  let judged = 0;
  let failed = 0;
  let skipped = 0;
  let charged = 0;
  let saved = 0;
  for (const r of reader.decisionGroups(range)) {
    charged += r.chargedMicros;
    saved += r.savedMicros;
    if (r.decision === "judged") judged += r.calls;
    else if (r.decision === "failed") failed += r.calls;
    else {
      skipped += r.calls;
      const reason = r.reason ?? "unknown";
      skippedByReason[reason] = (skippedByReason[reason] ?? 0) + r.calls;
      savedByReason[reason] = ledgerUsd(r.savedMicros);
    }
  }

  const episodes = reader.episodes(range);
  // One pass over the signals (a few rows per episode), not one read per episode.
  const signalsByEpisode = new Map<string, EpisodeRow["signals"][number][]>();
  if (episodes.length > 0) {
    for (const { episodeId, ts, channel, status, attempts } of reader.episodeSignals()) {
      const list = signalsByEpisode.get(episodeId) ?? [];
      list.push({ ts: iso(ts), channel, status, attempts });
      signalsByEpisode.set(episodeId, list);
    }
  }
  const episodesByKey = new Map<string, EpisodeRow[]>();
  for (const e of episodes) {
    const list = episodesByKey.get(e.sessionKey) ?? [];
    list.push({
      episode_id: e.id,
      started: iso(e.startedMs),
      ended: e.endedMs === null ? null : iso(e.endedMs),
      fingerprint: e.fingerprint,
      repeats: e.repeats,
      evidence: e.evidence,
      detected_turn: e.detectedTurn,
      signals: signalsByEpisode.get(e.id) ?? [],
    });
    episodesByKey.set(e.sessionKey, list);
  }
  // The caps of the guard that made the decisions, not of whoever runs the report.
  const config = configOf(reader.configs(), o);
  const cap = config.session_budget_usd;
  const window = { since: o.until - config.budget_window_ms, until: o.until, sessionKey: key };
  const used = reader.chargedBy("session_key", window);
  const sessions: SessionRow[] = reader.keys(range).map((r) => ({
    session_key: r.sessionKey,
    calls: r.calls,
    skipped: r.skipped,
    failed: r.failed,
    charged_usd: ledgerUsd(r.chargedMicros),
    ...split(r),
    saved_usd: ledgerUsd(r.savedMicros),
    budget: { used_usd: ledgerUsd(used.get(r.sessionKey) ?? 0), cap_usd: cap },
    episodes: episodesByKey.get(r.sessionKey) ?? [],
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
    ? reader.chargedBy("judge", { since: o.until - 86_400_000, until: o.until })
    : undefined;

  const tokens = (column: "judge" | "model"): TokenRow[] =>
    reader.tokens(column, range).map((r) => ({
      name: r.name,
      calls: r.calls,
      input_tokens: r.inputTokens,
      output_tokens: r.outputTokens,
      cache_read_tokens: r.cacheReadTokens,
      cache_write_tokens: r.cacheWriteTokens,
      charged_usd: ledgerUsd(r.chargedMicros),
      ...split(r),
      ...(column === "judge" &&
        judgeUsed !== undefined && {
          budget: { used_usd: ledgerUsd(judgeUsed.get(r.name) ?? 0), cap_usd: judgeCap(r.name) },
        }),
    }));

  // Hours for ranges up to two days, days beyond, unless asked.
  const bucket = o.bucket ?? (o.until - o.since <= 2 * 86_400_000 ? "hour" : "day");
  const width = bucket === "hour" ? 3_600_000 : 86_400_000;
  const points = reader.series(range, width).map((p) => ({
    start: iso(p.startMs),
    charged_usd: ledgerUsd(p.chargedMicros),
    saved_usd: ledgerUsd(p.savedMicros),
  }));
  const est = reader.estimates(range);

  return {
    ledger: reader.location,
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
        reported: bySource.reportedCalls,
        computed: bySource.computedCalls,
        estimate: bySource.estimatedCalls,
        unknown: bySource.unknownCalls,
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
      calls: est.calls,
      reserved_usd: ledgerUsd(est.reservedMicros),
      charged_usd: ledgerUsd(est.chargedMicros),
      ratio: est.reservedMicros
        ? Math.round(((est.chargedMicros ?? 0) / est.reservedMicros) * 1000) / 1000
        : null,
      mean_abs_error_usd: est.meanAbsErrorMicros === null ? null : ledgerUsd(est.meanAbsErrorMicros),
    },
    config,
    ...(o.detail && {
      detail: collectDetail(reader, range, {
        sessions,
        span:
          points.length === 0
            ? null
            : { first: Date.parse(points[0]!.start), last: Date.parse(points.at(-1)!.start), width },
      }),
    }),
  };
}
