// Types for corpus-eval.mjs (used by the TypeScript tests).
export interface CorpusTurn {
  user?: string;
  assistant: string;
  facts?: { cost_usd: number; session_id: string; outcome: string; tools_used: string[] };
}
export interface CorpusCase {
  name: string;
  kind: "stuck" | "healthy" | "recovers";
  tier?: "core" | "hard";
  family: string;
  turns: CorpusTurn[];
  canned_from?: number;
  recovered_at?: number;
  episodes?: Array<{ canned_from: number; recovered_at: number }>;
}
export interface PlayedTurn {
  skipped: boolean;
  cost: number;
}
export interface ScoredEpisode {
  delay: number | null;
  recovered: boolean | null;
  cannedTurns: number;
}
export interface ScoredCase {
  name: string;
  kind: CorpusCase["kind"];
  tier: "core" | "hard";
  family: string;
  falseSkips: number[];
  episodes: ScoredEpisode[];
  cannedCost: number;
  savedCost: number;
  wastedCost: number;
  totalCost: number;
}
interface GuardLike {
  run(request: unknown, judge: () => Promise<unknown>): Promise<{ status: string; reason?: string }>;
  close(): Promise<void>;
}
export function callCost(chars: number): number;
export function episodesOf(c: CorpusCase): Array<{ canned_from: number; recovered_at: number }>;
export function playCase(guard: GuardLike, c: CorpusCase, key: string): Promise<PlayedTurn[]>;
export function scoreCase(c: CorpusCase, turns: PlayedTurn[]): ScoredCase;
export function evaluate(
  corpus: CorpusCase[],
  makeGuard: () => GuardLike | Promise<GuardLike>,
): Promise<{ first: ScoredCase[]; known: ScoredCase[] }>;
export function summarize(scored: ScoredCase[]): Record<string, unknown>;
export function describeSummary(label: string, s: Record<string, unknown>): Record<string, unknown>;
export function misses(scored: ScoredCase[], maxDelay: number): string[];
