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
});
