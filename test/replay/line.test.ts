import { describe, expect, it } from "vitest";
import { parseLine } from "../../src/replay/line.js";

const line = (usage: unknown) =>
  JSON.stringify({
    ts: "2026-11-20T08:00:00Z",
    judge: "observation_extraction",
    model: "claude-sonnet-4-6",
    session: { session_key: "k", user_messages: ["q"], assistant_messages: ["a"] },
    usage,
  });

describe("a replay line's usage", () => {
  it("keeps cache writes split by lifetime, as the guard and the sidecar read them", () => {
    const parsed = parseLine(
      line({
        input_tokens: 10,
        output_tokens: 20,
        cache_read_input_tokens: 30,
        cache_creation_input_tokens: 1_000_000,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1_000_000 },
      }),
    );
    expect(parsed.ok && parsed.line.usage).toEqual({
      inputTokens: 10,
      outputTokens: 20,
      cacheReadTokens: 30,
      cacheWriteTokens: 0,
      cacheWrite1hTokens: 1_000_000,
    });
  });

  it("reads a total without the split as 5-minute writes", () => {
    const parsed = parseLine(line({ input_tokens: 1, output_tokens: 2, cache_creation_input_tokens: 40 }));
    expect(parsed.ok && parsed.line.usage).toMatchObject({ cacheWriteTokens: 40, cacheWrite1hTokens: 0 });
  });

  it("refuses a negative count, naming the field", () => {
    const parsed = parseLine(line({ input_tokens: 1, output_tokens: -2 }));
    expect(parsed).toMatchObject({ ok: false, field: "usage.output_tokens" });
  });

  it.each<[string, unknown, object]>([
    [
      "OpenAI Chat Completions",
      { prompt_tokens: 1000, completion_tokens: 50, prompt_tokens_details: { cached_tokens: 600 } },
      { inputTokens: 400, outputTokens: 50, cacheReadTokens: 600 },
    ],
    [
      "OpenAI Responses",
      { input_tokens: 1000, output_tokens: 50, input_tokens_details: { cached_tokens: 100 } },
      { inputTokens: 900, outputTokens: 50, cacheReadTokens: 100 },
    ],
    [
      "Gemini",
      {
        promptTokenCount: 1000,
        candidatesTokenCount: 50,
        thoughtsTokenCount: 25,
        cachedContentTokenCount: 10,
      },
      { inputTokens: 990, outputTokens: 75, cacheReadTokens: 10 },
    ],
  ])("reads a %s usage as the guard reads that provider's result", (_name, usage, expected) => {
    const parsed = parseLine(line(usage));
    expect(parsed.ok && parsed.line.usage).toEqual(expected);
  });

  it.each([
    [{ prompt_tokens: 1000 }, "usage.completion_tokens", /missing \(required\)/],
    [{ promptTokenCount: 10, thoughtsTokenCount: -1 }, "usage.thoughtsTokenCount", />=\s*0/],
    [
      { prompt_tokens: 1, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 1.5 } },
      "usage.prompt_tokens_details.cached_tokens",
      /expected int/,
    ],
  ])("names the field of the shape that was meant: %j", (usage, field, message) => {
    const parsed = parseLine(line(usage));
    expect(parsed).toMatchObject({ ok: false, field });
    expect(!parsed.ok && parsed.message).toMatch(message);
  });
});
