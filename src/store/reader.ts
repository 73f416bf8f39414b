import type { StuckEvidence } from "../detection/evidence.js";
import type { EvidenceStep } from "../detection/window.js";
import type { GuardConfigRecord } from "./types.js";

/*
 * What reports read of a ledger: sums over ranges of decisions, episodes, signals and recorded
 * configurations, in micro-dollars and counts. Shaping them (USD, field names, what to show) is
 * the report's; reading them, whatever the schema version of the ledger, is the store's.
 */

/** The decisions a read covers: `since` (inclusive) to `until` (exclusive), one key or all. */
export interface DecisionRange {
  readonly since: number;
  readonly until: number;
  readonly sessionKey?: string | null | undefined;
}

/**
 * Charges of a group of decisions split by where they came from (see {@link CostSource}), with
 * the calls of each source. Rows without a recorded source (written before schema v4) that have
 * tokens count as computed, the only use of tokens then; the rest as unknown.
 */
export interface CostSplitSums {
  readonly reportedMicros: number;
  /** Tokens x the price table of the same reported calls, where they gave tokens. */
  readonly reportedComputedMicros: number;
  readonly computedMicros: number;
  readonly estimatedMicros: number;
  readonly unknownMicros: number;
  readonly reportedCalls: number;
  readonly computedCalls: number;
  readonly estimatedCalls: number;
  /** Judged and failed calls without a known source. */
  readonly unknownCalls: number;
}

/** Decisions of one kind and reason. */
export interface DecisionGroup {
  readonly decision: string;
  readonly reason: string | null;
  readonly calls: number;
  readonly chargedMicros: number;
  readonly savedMicros: number;
}

/** Every decision on one key. */
export interface KeySums extends CostSplitSums {
  readonly sessionKey: string;
  readonly calls: number;
  readonly skipped: number;
  readonly failed: number;
  readonly chargedMicros: number;
  readonly savedMicros: number;
}

/** The judged and failed calls of one judge kind or model. */
export interface TokenSums extends CostSplitSums {
  readonly name: string;
  readonly calls: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cacheReadTokens: number;
  readonly cacheWriteTokens: number;
  readonly chargedMicros: number;
}

/** One period of a series. */
export interface PeriodSums {
  readonly startMs: number;
  readonly chargedMicros: number;
  readonly savedMicros: number;
}

/** Judged calls that held a reservation: what was reserved against what was charged. */
export interface EstimateSums {
  readonly calls: number;
  /** null when there were none. */
  readonly reservedMicros: number | null;
  readonly chargedMicros: number | null;
  readonly meanAbsErrorMicros: number | null;
}

/** A stuck episode of a key as the ledger keeps it. */
export interface KeyEpisodeRow {
  readonly id: string;
  readonly fingerprint: string;
  readonly evidence: StuckEvidence;
  readonly repeats: number;
  /** 1-based index of the reply at which it was detected. */
  readonly detectedTurn: number;
  readonly startedMs: number;
  /** null while the key is still stuck. */
  readonly endedMs: number | null;
}

/** A stuck episode, and its key. */
export interface EpisodeRow extends KeyEpisodeRow {
  readonly sessionKey: string;
}

/** A delivery of an episode's signal (its last attempt). */
export interface EpisodeSignalRow {
  readonly episodeId: string;
  readonly ts: number;
  readonly channel: string;
  readonly status: string;
  readonly attempts: number;
}

/** Skipped calls of one judge kind, model and episode (null: not skipped as stuck). */
export interface SkipSums {
  readonly judge: string;
  readonly model: string;
  readonly episodeId: string | null;
  readonly calls: number;
  readonly savedMicros: number;
}

/** Decisions of one key within one column of a timeline. */
export interface TimelineSums {
  readonly sessionKey: string;
  readonly column: number;
  readonly judged: number;
  readonly failed: number;
  readonly skipped: number;
}

/** How many decisions, and the times of the first and last (null when none). */
export interface DecisionSpan {
  readonly count: number;
  readonly firstMs: number | null;
  readonly lastMs: number | null;
}

/** Reads a ledger for reports, without blocking the guards writing to it. */
export interface LedgerReader {
  /** Where the ledger is (for messages). */
  readonly location: string;
  /** Runs `fn`, and every read in it, on one consistent snapshot of the ledger. */
  snapshot<T>(fn: () => T): T;
  decisionGroups(r: DecisionRange): DecisionGroup[];
  costSplit(r: DecisionRange): CostSplitSums;
  /** Per key, most charged and saved first, then by key. */
  keys(r: DecisionRange): KeySums[];
  /** What each key, or each judge kind, was charged. */
  chargedBy(column: "session_key" | "judge", r: DecisionRange): Map<string, number>;
  /** Judged and failed calls per judge kind or model, most charged first, then by name. */
  tokens(column: "judge" | "model", r: DecisionRange): TokenSums[];
  /** Charged and saved per period of `widthMs` (from the epoch), periods with decisions only. */
  series(r: DecisionRange, widthMs: number): PeriodSums[];
  estimates(r: DecisionRange): EstimateSums;
  /** Episodes open at some time in the range, oldest first. */
  episodes(r: DecisionRange): EpisodeRow[];
  /** Deliveries of episodes' signals, in the order recorded. */
  episodeSignals(): EpisodeSignalRow[];
  /** The configurations guards recorded, oldest first (none before schema v4). */
  configs(): GuardConfigRecord[];
  skips(r: DecisionRange): SkipSums[];
  /** The decisions of `keys`, per column of `stepMs` from `startMs`. */
  timeline(r: DecisionRange, startMs: number, stepMs: number, keys: readonly string[]): TimelineSums[];
  /** The evidence each episode was opened on (null: not recorded, before schema v5). */
  trails(episodeIds: readonly string[]): Map<string, EvidenceStep[] | null>;
  /** One key's episodes, oldest first, with their evidence. */
  keyEpisodes(sessionKey: string): Array<KeyEpisodeRow & { readonly trail: EvidenceStep[] | null }>;
  /** Whether the key is in an episode now. */
  keyStuck(sessionKey: string): boolean;
  decisionSpan(sessionKey?: string): DecisionSpan;
  close(): void;
}

// Defined with the other errors; re-exported for the readers that import it from here.
export { LedgerReadError } from "../errors.js";
