import { z } from "zod";
import type { Usage } from "./prices.js";
import { readUsage } from "./usage.js";

/**
 * Anthropic's usage object as JSON carries it (a judge's response, a sidecar settlement, a
 * recorded replay line), with the cache writes split by lifetime where given: 1-hour writes
 * cost more than 5-minute ones. `strict` refuses unknown keys.
 */
export function usageSchema(maxTokens: number, strict: boolean) {
  const tokens = z.number().int().nonnegative().max(maxTokens, `at most ${maxTokens} tokens`);
  const creation = z.object({
    ephemeral_5m_input_tokens: tokens.optional(),
    ephemeral_1h_input_tokens: tokens.optional(),
  });
  const usage = z.object({
    input_tokens: tokens,
    output_tokens: tokens,
    cache_read_input_tokens: tokens.optional(),
    cache_creation_input_tokens: tokens.optional(),
    cache_creation: (strict ? creation.strict() : creation).optional(),
  });
  return strict ? usage.strict() : usage;
}

/** The usage of a parsed usage object, read as the guard reads a judge's result in process. */
export function toUsage(u: z.infer<ReturnType<typeof usageSchema>> | undefined): Usage | undefined {
  return u && readUsage(u)?.usage;
}
