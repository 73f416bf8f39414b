import type { EvidenceStep } from "../detection/window.js";
import type { DecisionRange, LedgerReader, SkipSums } from "../store/reader.js";
import { ledgerUsd } from "../util/money.js";

/**
 * What an incident review needs beyond the totals (the HTML report): when each key was judged
 * and skipped, what each stuck episode cost and why it was opened, and the savings per judge
 * kind and model. Read in the report's transaction, over the same range; only when asked
 * (`ReportOptions.detail`), so the table, JSON and CSV formats read no more than before.
 */
export interface ReportDetail {
  /** Decisions per key over time; null when the range has no decisions. */
  readonly timeline: Timeline | null;
  /** Skipped calls and their savings per judge kind (the judged side is `Report.by_judge`). */
  readonly saved_by_judge: SavedRow[];
  readonly saved_by_model: SavedRow[];
  /** Per episode id, for the episodes listed under `Report.sessions`. */
  readonly episodes: Record<string, EpisodeDetail>;
}

export interface Timeline {
  /** The span with decisions: from the first period of the series to the end of the last. */
  readonly start: string;
  readonly end: string;
  /** Width of one column. */
  readonly step_ms: number;
  readonly columns: number;
  /** Keys with a stuck episode first, then the others in the report's order; at most `MAX_KEYS`. */
  readonly keys: TimelineKey[];
  /** Keys with decisions in the range that are not in `keys`. */
  readonly keys_left_out: number;
}

export interface TimelineKey {
  readonly session_key: string;
  /** Columns with decisions only (`column` counts from 0 at `start`). */
  readonly cells: TimelineCell[];
}

export interface TimelineCell {
  readonly column: number;
  readonly judged: number;
  readonly failed: number;
  readonly skipped: number;
}

export interface SavedRow {
  readonly name: string;
  readonly skipped: number;
  readonly saved_usd: number;
}

export interface EpisodeDetail {
  /** Its key's calls skipped as stuck within the range, and what they would have cost. */
  readonly calls_skipped: number;
  readonly saved_usd: number;
  /** The evidence it was opened on, reply by reply (no text); null before ledger schema v5. */
  readonly trail: EvidenceStep[] | null;
}

/** Lanes drawn at most: the timeline is for reading, the per-key table lists every key. */
export const MAX_KEYS = 20;
/** Columns drawn at most across the span. */
const MAX_COLUMNS = 96;
const MINUTE = 60_000;
/** Column widths that divide hours and days, so columns line up with the series' periods. */
const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10_080].map((m) => m * MINUTE);

/** What `collectDetail` reads of the report built so far. */
export interface DetailInput {
  readonly sessions: ReadonlyArray<{
    readonly session_key: string;
    readonly episodes: ReadonlyArray<{ readonly episode_id: string }>;
  }>;
  /** Start (ms) of the series' first and last periods, and the period width; null when empty. */
  readonly span: { readonly first: number; readonly last: number; readonly width: number } | null;
}

/** Reads the detail of the report's range, in the report's snapshot of the ledger. */
export function collectDetail(reader: LedgerReader, range: DecisionRange, input: DetailInput): ReportDetail {
  const episodeIds = input.sessions.flatMap((s) => s.episodes.map((e) => e.episode_id));
  // The skipped calls once, grouped three ways at once: judge kind, model and episode.
  const skips = reader.skips(range);
  return {
    timeline: input.span === null ? null : timeline(reader, range, input, input.span),
    saved_by_judge: savedBy(skips, "judge"),
    saved_by_model: savedBy(skips, "model"),
    episodes: episodes(reader, episodeIds, skips),
  };
}

function timeline(
  reader: LedgerReader,
  range: DecisionRange,
  input: DetailInput,
  span: NonNullable<DetailInput["span"]>,
): Timeline {
  const start = span.first;
  const end = span.last + span.width;
  const step = STEPS.find((s) => (end - start) / s <= MAX_COLUMNS) ?? STEPS[STEPS.length - 1]!;
  const stuck = input.sessions.filter((s) => s.episodes.length > 0);
  const rest = input.sessions.filter((s) => s.episodes.length === 0);
  const keys = [...stuck, ...rest].slice(0, MAX_KEYS).map((s) => s.session_key);
  const cells = new Map<string, TimelineCell[]>(keys.map((k) => [k, []]));
  for (const { sessionKey, ...cell } of reader.timeline(range, start, step, keys))
    cells.get(sessionKey)?.push(cell);
  return {
    start: new Date(start).toISOString(),
    end: new Date(end).toISOString(),
    step_ms: step,
    columns: Math.ceil((end - start) / step),
    keys: keys.map((k) => ({ session_key: k, cells: cells.get(k)! })),
    keys_left_out: input.sessions.length - keys.length,
  };
}

function savedBy(skips: readonly SkipSums[], column: "judge" | "model"): SavedRow[] {
  const sums = new Map<string, { n: number; micros: number }>();
  for (const r of skips) {
    const s = sums.get(r[column]) ?? { n: 0, micros: 0 };
    s.n += r.calls;
    s.micros += r.savedMicros;
    sums.set(r[column], s);
  }
  return [...sums]
    .map(([name, s]) => ({ name, skipped: s.n, saved_usd: ledgerUsd(s.micros) }))
    .sort((a, b) => b.saved_usd - a.saved_usd || (a.name < b.name ? -1 : 1));
}

function episodes(
  reader: LedgerReader,
  ids: readonly string[],
  skips: readonly SkipSums[],
): Record<string, EpisodeDetail> {
  if (ids.length === 0) return {};
  const skipped = new Map<string, { n: number; micros: number }>();
  for (const r of skips) {
    if (r.episodeId === null) continue;
    const s = skipped.get(r.episodeId) ?? { n: 0, micros: 0 };
    s.n += r.calls;
    s.micros += r.savedMicros;
    skipped.set(r.episodeId, s);
  }
  const trails = reader.trails(ids);
  const out: Record<string, EpisodeDetail> = {};
  for (const id of ids) {
    const s = skipped.get(id);
    out[id] = { calls_skipped: s?.n ?? 0, saved_usd: ledgerUsd(s?.micros), trail: trails.get(id) ?? null };
  }
  return out;
}
