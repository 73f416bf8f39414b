import { z } from "zod";
import { LIMITS } from "../domain/limits.js";
import type { readUsage } from "../pricing/usage.js";

/**
 * A usage object as JSON carries it (a judge's response, a sidecar settlement, a recorded replay
 * line), in the shape of the provider that reported it, each read as {@link readUsage} reads it:
 * - Anthropic: `input_tokens`, `output_tokens`, `cache_read_input_tokens`,
 *   `cache_creation_input_tokens`, `cache_creation` (cache writes split by lifetime: 1-hour
 *   writes cost more than 5-minute ones);
 * - OpenAI Responses: `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`;
 * - OpenAI Chat Completions: `prompt_tokens`, `completion_tokens`,
 *   `prompt_tokens_details.cached_tokens`;
 * - Gemini: `promptTokenCount`, `candidatesTokenCount`, `cachedContentTokenCount`,
 *   `thoughtsTokenCount`.
 * The shape is told by its keys, so that an error names the field of the shape that was meant.
 * `strict` refuses unknown keys.
 */
export function usageSchema(strict: boolean, error?: z.core.$ZodErrorMap) {
  const max = LIMITS.usageTokens;
  const tokens = z.number().int().nonnegative().max(max, `at most ${max} tokens`);
  const label = z.string().max(LIMITS.label);
  const obj = <T extends z.core.$ZodLooseShape>(shape: T) =>
    strict ? z.object(shape).strict() : z.object(shape);
  const details = obj({
    cached_tokens: tokens.optional(),
    audio_tokens: tokens.optional(),
    reasoning_tokens: tokens.optional(),
    text_tokens: tokens.optional(),
    image_tokens: tokens.optional(),
    accepted_prediction_tokens: tokens.optional(),
    rejected_prediction_tokens: tokens.optional(),
  }).optional();
  // Anthropic and OpenAI Responses share input_tokens and output_tokens.
  const snake = obj({
    input_tokens: tokens,
    output_tokens: tokens,
    cache_read_input_tokens: tokens.optional(),
    cache_creation_input_tokens: tokens.optional(),
    cache_creation: obj({
      ephemeral_5m_input_tokens: tokens.optional(),
      ephemeral_1h_input_tokens: tokens.optional(),
    }).optional(),
    input_tokens_details: details,
    output_tokens_details: details,
    total_tokens: tokens.optional(),
    server_tool_use: z.record(z.string(), z.number()).optional(),
    service_tier: label.nullable().optional(),
  });
  const chat = obj({
    prompt_tokens: tokens,
    completion_tokens: tokens,
    total_tokens: tokens.optional(),
    prompt_tokens_details: details,
    completion_tokens_details: details,
  });
  const modalities = z.array(obj({ modality: label, tokenCount: tokens.optional() })).max(LIMITS.modalities);
  const gemini = obj({
    promptTokenCount: tokens,
    candidatesTokenCount: tokens.optional(),
    cachedContentTokenCount: tokens.optional(),
    thoughtsTokenCount: tokens.optional(),
    toolUsePromptTokenCount: tokens.optional(),
    totalTokenCount: tokens.optional(),
    promptTokensDetails: modalities.optional(),
    candidatesTokensDetails: modalities.optional(),
    cacheTokensDetails: modalities.optional(),
    toolUsePromptTokensDetails: modalities.optional(),
    trafficType: label.optional(),
  });
  const has = (v: unknown, ...keys: string[]) =>
    v !== null && typeof v === "object" && keys.some((k) => k in (v as object));
  return z.unknown().transform((v, ctx) => {
    const schema = has(v, "prompt_tokens", "completion_tokens")
      ? chat
      : has(v, "promptTokenCount", "candidatesTokenCount")
        ? gemini
        : snake;
    const r = schema.safeParse(v, error === undefined ? undefined : { error });
    if (r.success) return r.data;
    for (const issue of r.error.issues) ctx.addIssue({ ...issue });
    return z.NEVER;
  });
}
