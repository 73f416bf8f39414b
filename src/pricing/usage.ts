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

/** The model of a result: its `model` (Gemini: `modelVersion`), or the only model of an Agent SDK `modelUsage`. */
function modelOf(v: Record<string, unknown>): string | undefined {
  for (const m of [v.model, v.modelVersion]) if (typeof m === "string" && m !== "") return m;
  const byModel = v.modelUsage;
  if (byModel === null || typeof byModel !== "object" || Array.isArray(byModel)) return undefined;
  const models = Object.keys(byModel);
  return models.length === 1 && models[0] !== "" ? models[0] : undefined;
}

const field = (v: unknown, key: string): unknown =>
  v !== null && typeof v === "object" ? (v as Record<string, unknown>)[key] : undefined;

/** Input tokens not read from the cache, when a shape counts the cached ones in its input total. */
const fresh = (total: number, ...cached: Array<number | undefined>): number =>
  Math.max(0, total - cached.reduce<number>((a, b) => a + (b ?? 0), 0));

/**
 * Token counts in the shape of one provider's usage object, at this level of `v`; undefined
 * when `v` is none of them. Each is read in the guard's terms: input not read from the cache,
 * output with reasoning (thinking) tokens, cache reads, cache writes.
 */
function tokensOf(v: Record<string, unknown>): Usage | undefined {
  // Phantom's JudgeResult and the like.
  const camelIn = count(v.inputTokens);
  const camelOut = count(v.outputTokens);
  if (camelIn !== undefined && camelOut !== undefined) {
    return {
      inputTokens: camelIn,
      outputTokens: camelOut,
      cacheReadTokens: count(v.cacheReadTokens) ?? count(v.cacheReadInputTokens) ?? 0,
      cacheWriteTokens: count(v.cacheWriteTokens) ?? count(v.cacheCreationInputTokens) ?? 0,
    };
  }
  // OpenAI Chat Completions: prompt_tokens include the cached ones; completion_tokens the reasoning.
  const prompt = count(v.prompt_tokens);
  const completion = count(v.completion_tokens);
  if (prompt !== undefined && completion !== undefined) {
    const cached = count(field(v.prompt_tokens_details, "cached_tokens")) ?? 0;
    return { inputTokens: fresh(prompt, cached), outputTokens: completion, cacheReadTokens: cached };
  }
  const snakeIn = count(v.input_tokens);
  const snakeOut = count(v.output_tokens);
  if (snakeIn !== undefined && snakeOut !== undefined) {
    // OpenAI Responses: input_tokens include input_tokens_details.cached_tokens.
    const responses = count(field(v.input_tokens_details, "cached_tokens"));
    if (responses !== undefined)
      return { inputTokens: fresh(snakeIn, responses), outputTokens: snakeOut, cacheReadTokens: responses };
    // LangChain's usage_metadata: input_tokens include input_token_details' cache reads and writes.
    const details = v.input_token_details;
    if (details !== null && typeof details === "object") {
      const read = count(field(details, "cache_read"));
      const write = count(field(details, "cache_creation"));
      return {
        inputTokens: fresh(snakeIn, read, write),
        outputTokens: snakeOut,
        cacheReadTokens: read ?? 0,
        cacheWriteTokens: write ?? 0,
      };
    }
    // Anthropic: input_tokens exclude the cache, which is counted apart.
    const creation = v.cache_creation as Record<string, unknown> | undefined;
    const w5 = count(creation?.ephemeral_5m_input_tokens);
    const w1h = count(creation?.ephemeral_1h_input_tokens);
    return {
      inputTokens: snakeIn,
      outputTokens: snakeOut,
      cacheReadTokens: count(v.cache_read_input_tokens) ?? 0,
      // The split by cache lifetime, where given, replaces the total.
      cacheWriteTokens: w5 ?? (w1h === undefined ? (count(v.cache_creation_input_tokens) ?? 0) : 0),
      cacheWrite1hTokens: w1h ?? 0,
    };
  }
  // Gemini's usageMetadata: promptTokenCount includes cachedContentTokenCount; thinking tokens
  // (thoughtsTokenCount) are billed as output beside candidatesTokenCount.
  const geminiPrompt = count(v.promptTokenCount);
  if (geminiPrompt !== undefined) {
    const cached = count(v.cachedContentTokenCount) ?? 0;
    return {
      inputTokens: fresh(geminiPrompt, cached) + (count(v.toolUsePromptTokenCount) ?? 0),
      outputTokens: (count(v.candidatesTokenCount) ?? 0) + (count(v.thoughtsTokenCount) ?? 0),
      cacheReadTokens: cached,
    };
  }
  return undefined;
}

/** Where a result keeps its usage: Anthropic and OpenAI `usage`, Gemini `usageMetadata`, LangChain `usage_metadata`. */
const USAGE_KEYS = ["usage", "usageMetadata", "usage_metadata"] as const;

/**
 * Reads token usage and reported cost from the shapes judges return:
 * - Phantom's `JudgeResult` / `JudgeQueryResult` and `JudgeSubprocessError.partialCost`:
 *   `{inputTokens, outputTokens, costUsd}`;
 * - the Claude Agent SDK's result message: `{type: "result", total_cost_usd, usage: {input_tokens,
 *   ...}, modelUsage?}`;
 * - an Anthropic `Message`: `{usage: {input_tokens, output_tokens, cache_read_input_tokens,
 *   cache_creation_input_tokens, cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}}}`;
 * - an OpenAI Chat Completion: `{model, usage: {prompt_tokens, completion_tokens,
 *   prompt_tokens_details: {cached_tokens}}}`;
 * - an OpenAI Responses result: `{model, usage: {input_tokens, output_tokens,
 *   input_tokens_details: {cached_tokens}}}`;
 * - a Gemini `GenerateContentResponse`: `{modelVersion, usageMetadata: {promptTokenCount,
 *   candidatesTokenCount, cachedContentTokenCount, thoughtsTokenCount}}`;
 * - a LangChain message's `usage_metadata`: `{input_tokens, output_tokens, input_token_details:
 *   {cache_read, cache_creation}}`;
 * - any of these usage objects alone;
 * - a cost alone (`costUsd`, `total_cost_usd` or `cost_usd`), as Phantom's reflection
 *   subprocess result reports it.
 * A reported cost is kept next to the tokens: the guard charges it, and records tokens x price
 * beside it. Returns undefined when nothing is recognised.
 */
export function readUsage(value: unknown): ReportedCost | undefined {
  if (value === null || typeof value !== "object") return undefined;
  const v = value as Record<string, unknown>;
  const cost = costOf(v);
  const tokens = tokensOf(v);
  if (tokens !== undefined) {
    const model = modelOf(v);
    return withCost({ usage: tokens, ...(model === undefined ? {} : { model }) }, cost);
  }
  const key = USAGE_KEYS.find((k) => v[k] !== undefined);
  if (key !== undefined) {
    const inner = readUsage(v[key]);
    // A provider's response names its model beside its usage; an SDK result its cost.
    const model = modelOf(v);
    const out = inner === undefined ? (cost === undefined ? undefined : {}) : inner;
    if (out === undefined) return undefined;
    return withCost(model === undefined ? out : { ...out, model }, cost);
  }
  if (v.partialCost !== undefined) return readUsage(v.partialCost);
  return cost === undefined ? undefined : { costUsd: cost };
}

/**
 * Whether a result carries a usage object the guard could not read (a provider's shape it does
 * not know): such a call is charged its estimate, which the caller should hear about.
 */
export function hasUnreadUsage(value: unknown): boolean {
  if (value === null || typeof value !== "object") return false;
  const v = value as Record<string, unknown>;
  return (
    USAGE_KEYS.some((k) => v[k] !== null && typeof v[k] === "object") && readUsage(value)?.usage === undefined
  );
}
