import type { StuckEvidence } from "../detection/evidence.js";
import type {
  CostSplitSums,
  DecisionGroup,
  EpisodeSignalRow,
  EstimateSums,
  KeyEpisodeRow,
  KeySums,
  PeriodSums,
  SkipSums,
  TimelineSums,
  TokenSums,
} from "./reader.js";
import { num, numOrNull, type Row } from "./rows.js";

/*
 * The rows the readers' queries return (SQLite's and PostgreSQL's name their columns alike), as
 * the sums of reader.ts. Drivers return sums as numbers, bigints or numeric strings: all read
 * as numbers (rows.ts).
 */

/** The columns {@link splitSql} selects, by the sum each holds. */
const SPLIT_COLUMNS: Readonly<Record<keyof CostSplitSums, string>> = {
  reportedMicros: "s_rep",
  reportedComputedMicros: "s_rep_comp",
  computedMicros: "s_comp",
  estimatedMicros: "s_est",
  unknownMicros: "s_unk",
  reportedCalls: "n_rep",
  computedCalls: "n_comp",
  estimatedCalls: "n_est",
  unknownCalls: "n_unk",
};

export function splitOf(r: Row): CostSplitSums {
  const sums = {} as Record<keyof CostSplitSums, number>;
  for (const [field, column] of Object.entries(SPLIT_COLUMNS))
    sums[field as keyof CostSplitSums] = num(r[column]);
  return sums;
}

/**
 * Sums, per group, of the charges by source (the columns {@link splitOf} reads back), for a
 * SQLite ledger of schema `version`; a PostgreSQL ledger has the current one's columns. SQL both
 * understand.
 */
export function splitSql(version: number): string {
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

export function episodeOf(r: Row): KeyEpisodeRow {
  return {
    id: String(r.id),
    fingerprint: String(r.fingerprint),
    evidence: String(r.evidence) as StuckEvidence,
    repeats: Number(r.repeats),
    detectedTurn: Number(r.detected_turn),
    startedMs: Number(r.started_ms),
    endedMs: numOrNull(r.ended_ms),
  };
}

export const groupOf = (g: Row): DecisionGroup => ({
  decision: String(g.decision),
  reason: g.reason === null ? null : String(g.reason),
  calls: num(g.n),
  chargedMicros: num(g.charged),
  savedMicros: num(g.saved),
});

export const keySumsOf = (k: Row): KeySums => ({
  sessionKey: String(k.session_key),
  calls: num(k.calls),
  skipped: num(k.skipped),
  failed: num(k.failed),
  chargedMicros: num(k.charged),
  savedMicros: num(k.saved),
  ...splitOf(k),
});

export const tokenSumsOf = (t: Row): TokenSums => ({
  name: String(t.name),
  calls: num(t.calls),
  inputTokens: num(t.i),
  outputTokens: num(t.o),
  cacheReadTokens: num(t.cr),
  cacheWriteTokens: num(t.cw),
  chargedMicros: num(t.charged),
  ...splitOf(t),
});

export const periodOf = (p: Row): PeriodSums => ({
  startMs: num(p.start),
  chargedMicros: num(p.charged),
  savedMicros: num(p.saved),
});

export const estimateSumsOf = (e: Row): EstimateSums => ({
  calls: num(e.n),
  reservedMicros: numOrNull(e.reserved),
  chargedMicros: numOrNull(e.charged),
  meanAbsErrorMicros: numOrNull(e.mae),
});

export const episodeSignalOf = (s: Row): EpisodeSignalRow => ({
  episodeId: String(s.episode_id),
  ts: num(s.ts),
  channel: String(s.channel),
  status: String(s.status),
  attempts: num(s.attempts),
});

export const skipOf = (s: Row): SkipSums => ({
  judge: String(s.judge),
  model: String(s.model),
  episodeId: s.episode === null ? null : String(s.episode),
  calls: num(s.n),
  savedMicros: num(s.saved),
});

export const timelineOf = (t: Row): TimelineSums => ({
  sessionKey: String(t.k),
  column: num(t.c),
  judged: num(t.j),
  failed: num(t.f),
  skipped: num(t.s),
});
