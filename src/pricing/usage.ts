import type { Usage } from "./prices.js";

/** What a judge call reported about its own cost. */
export interface ReportedCost {
  readonly usage?: Usage;
  /**
   * The cost in USD the judge reported itself (with or without token counts). When given
   * (finite, >= 0) it is what the guard charges; tokens x price is used only without it.
   */
  readonly costUsd?: number;
  /** The model that really ran, where the judge says (Phantom escalates Haiku to Sonnet or Opus). */
  readonly model?: string;
  /** `costUsd` is the guard's own estimate (a call whose client never settled), not the judge's. */
  readonly estimated?: boolean;
}

const count = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;

/** A cost the object reports about itself, in the spellings judges use. */
const costOf = (v: Record<string, unknown>): number | undefined =>
  count(v.costUsd) ?? count(v.total_cost_usd) ?? count(v.cost_usd);

const withCost = (r: ReportedCost, cost: number | undefined): ReportedCost =>
  cost === undefined || r.costUsd !== undefined ? r : { ...r, costUsd: cost };

/** The model of a result: its `model`, or the only model of an Agent SDK `modelUsage`. */
function modelOf(v: Record<string, unknown>): string | undefined {
  if (typeof v.model === "string" && v.model !== "") return v.model;
  const byModel = v.modelUsage;
  if (byModel === null || typeof byModel !== "object" || Array.isArray(byModel)) return undefined;
  const models = Object.keys(byModel);
  return models.length === 1 && models[0] !== "" ? models[0] : undefined;
}

/**
 * Reads token usage and reported cost from the shapes judges return:
 * - Phantom's `JudgeResult` / `JudgeQueryResult` and `JudgeSubprocessError.partialCost`:
 *   `{inputTokens, outputTokens, costUsd}`;
 * - the Claude Agent SDK's result message: `{type: "result", total_cost_usd, usage: {input_tokens,
 *   ...}, modelUsage?}`;
 * - an Anthropic `Message`: `{usage: {input_tokens, output_tokens, cache_read_input_tokens,
 *   cache_creation_input_tokens, cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}}}`;
 * - a bare Anthropic usage object;
 * - a cost alone (`costUsd`, `total_cost_usd` or `cost_usd`), as Phantom's reflection
 *   subprocess result reports it.
 * A reported cost is kept next to the tokens: the guard charges it, and records tokens x price
 * beside it. Returns undefined when nothing is recognised.
 */
export function readUsage(value: unknown): ReportedCost | undefined {
  if (value === null || typeof value !== "object") return undefined;
  const v = value as Record<string, unknown>;
  const cost = costOf(v);
  const camelIn = count(v.inputTokens);
  const camelOut = count(v.outputTokens);
  if (camelIn !== undefined && camelOut !== undefined) {
    const model = modelOf(v);
    return {
      usage: {
        inputTokens: camelIn,
        outputTokens: camelOut,
        cacheReadTokens: count(v.cacheReadTokens) ?? count(v.cacheReadInputTokens) ?? 0,
        cacheWriteTokens: count(v.cacheWriteTokens) ?? count(v.cacheCreationInputTokens) ?? 0,
      },
      ...(cost === undefined ? {} : { costUsd: cost }),
      ...(model === undefined ? {} : { model }),
    };
  }
  const snakeIn = count(v.input_tokens);
  const snakeOut = count(v.output_tokens);
  if (snakeIn !== undefined && snakeOut !== undefined) {
    const creation = v.cache_creation as Record<string, unknown> | undefined;
    const w5 = count(creation?.ephemeral_5m_input_tokens);
    const w1h = count(creation?.ephemeral_1h_input_tokens);
    return withCost(
      {
        usage: {
          inputTokens: snakeIn,
          outputTokens: snakeOut,
          cacheReadTokens: count(v.cache_read_input_tokens) ?? 0,
          // The split by cache lifetime, where given, replaces the total.
          cacheWriteTokens: w5 ?? (w1h === undefined ? (count(v.cache_creation_input_tokens) ?? 0) : 0),
          cacheWrite1hTokens: w1h ?? 0,
        },
      },
      cost,
    );
  }
  if (v.usage !== undefined) {
    const inner = readUsage(v.usage);
    // An Anthropic Message names its model beside its usage; an SDK result its cost.
    const model = modelOf(v);
    const out = inner === undefined ? (cost === undefined ? undefined : {}) : inner;
    if (out === undefined) return undefined;
    return withCost(model === undefined ? out : { ...out, model }, cost);
  }
  if (v.partialCost !== undefined) return readUsage(v.partialCost);
  return cost === undefined ? undefined : { costUsd: cost };
}
