import type { Usage } from "./prices.js";

/** What a judge call reported about its own cost. */
export interface ReportedCost {
  readonly usage?: Usage;
  /** A cost in USD reported without token counts. */
  readonly costUsd?: number;
  /** The model that really ran, where the judge says (Phantom escalates Haiku to Sonnet or Opus). */
  readonly model?: string;
}

const count = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;

/**
 * Reads token usage from the shapes judges return:
 * - Phantom's `JudgeResult` / `JudgeQueryResult` and `JudgeSubprocessError.partialCost`:
 *   `{inputTokens, outputTokens, costUsd}`;
 * - an Anthropic `Message`: `{usage: {input_tokens, output_tokens, cache_read_input_tokens,
 *   cache_creation_input_tokens, cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}}}`;
 * - a bare Anthropic usage object.
 * Returns undefined when nothing is recognised.
 */
export function readUsage(value: unknown): ReportedCost | undefined {
  if (value === null || typeof value !== "object") return undefined;
  const v = value as Record<string, unknown>;
  const camelIn = count(v.inputTokens);
  const camelOut = count(v.outputTokens);
  if (camelIn !== undefined && camelOut !== undefined) {
    return {
      usage: {
        inputTokens: camelIn,
        outputTokens: camelOut,
        cacheReadTokens: count(v.cacheReadTokens) ?? count(v.cacheReadInputTokens) ?? 0,
        cacheWriteTokens: count(v.cacheWriteTokens) ?? count(v.cacheCreationInputTokens) ?? 0,
      },
      ...(count(v.costUsd) === undefined ? {} : { costUsd: count(v.costUsd) }),
      ...(typeof v.model === "string" && v.model !== "" ? { model: v.model } : {}),
    };
  }
  const snakeIn = count(v.input_tokens);
  const snakeOut = count(v.output_tokens);
  if (snakeIn !== undefined && snakeOut !== undefined) {
    const creation = v.cache_creation as Record<string, unknown> | undefined;
    const w5 = count(creation?.ephemeral_5m_input_tokens);
    const w1h = count(creation?.ephemeral_1h_input_tokens);
    return {
      usage: {
        inputTokens: snakeIn,
        outputTokens: snakeOut,
        cacheReadTokens: count(v.cache_read_input_tokens) ?? 0,
        // The split by cache lifetime, where given, replaces the total.
        cacheWriteTokens: w5 ?? (w1h === undefined ? (count(v.cache_creation_input_tokens) ?? 0) : 0),
        cacheWrite1hTokens: w1h ?? 0,
      },
    };
  }
  if (v.usage !== undefined) {
    const inner = readUsage(v.usage);
    // An Anthropic Message names its model beside its usage.
    return inner && typeof v.model === "string" && v.model !== "" ? { ...inner, model: v.model } : inner;
  }
  if (v.partialCost !== undefined) return readUsage(v.partialCost);
  const cost = count(v.costUsd) ?? count(v.cost_usd);
  return cost === undefined ? undefined : { costUsd: cost };
}
