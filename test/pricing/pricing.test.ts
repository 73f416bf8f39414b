import { describe, expect, it } from "vitest";
import { CostEstimator, DEFAULT_PRICES, PriceTable, readUsage } from "../../src/index.js";
import { parsePrices } from "../../src/pricing/prices.js";
import { hasUnreadUsage } from "../../src/pricing/usage.js";

describe("PriceTable", () => {
  const table = new PriceTable(DEFAULT_PRICES);

  it.each<[string, string, Parameters<PriceTable["costMicros"]>[1], number]>([
    ["Sonnet input and output", "claude-sonnet-4-6", { inputTokens: 1000, outputTokens: 100 }, 3000 + 1500],
    ["Opus 4.6", "claude-opus-4-6", { inputTokens: 1000, outputTokens: 100 }, 5000 + 2500],
    ["Haiku 4.5", "claude-haiku-4-5", { inputTokens: 1000, outputTokens: 100 }, 1000 + 500],
    [
      "a dated id matches its family",
      "claude-sonnet-4-5-20250929",
      { inputTokens: 1000, outputTokens: 0 },
      3000,
    ],
    [
      "cache reads at 0.1x input",
      "claude-sonnet-4-6",
      { inputTokens: 0, outputTokens: 0, cacheReadTokens: 10_000 },
      3000,
    ],
    [
      "5-minute cache writes at 1.25x",
      "claude-sonnet-4-6",
      { inputTokens: 0, outputTokens: 0, cacheWriteTokens: 1000 },
      3750,
    ],
    [
      "1-hour cache writes at 2x",
      "claude-sonnet-4-6",
      { inputTokens: 0, outputTokens: 0, cacheWrite1hTokens: 1000 },
      6000,
    ],
  ])("%s", (_name, model, usage, micros) => {
    expect(table.costMicros(model, usage)).toBe(micros);
  });

  it.each<[string, string, Parameters<PriceTable["costMicros"]>[1], number]>([
    // 1M input + 100k output, and 1M cached input, at each provider's list prices.
    ["GPT-4.1", "gpt-4.1", { inputTokens: 1e6, outputTokens: 1e5 }, 2e6 + 0.8e6],
    ["GPT-4.1 mini", "gpt-4.1-mini", { inputTokens: 1e6, outputTokens: 1e5 }, 0.4e6 + 0.16e6],
    ["GPT-4o", "gpt-4o", { inputTokens: 1e6, outputTokens: 1e5 }, 2.5e6 + 1e6],
    ["GPT-4o mini", "gpt-4o-mini", { inputTokens: 1e6, outputTokens: 1e5 }, 0.15e6 + 0.06e6],
    ["o3", "o3", { inputTokens: 1e6, outputTokens: 1e5 }, 2e6 + 0.8e6],
    ["o4-mini", "o4-mini", { inputTokens: 1e6, outputTokens: 1e5 }, 1.1e6 + 0.44e6],
    ["GPT-5", "gpt-5", { inputTokens: 1e6, outputTokens: 1e5 }, 1.25e6 + 1e6],
    ["Gemini 2.5 Pro", "gemini-2.5-pro", { inputTokens: 1e5, outputTokens: 1e5 }, 0.125e6 + 1e6],
    ["Gemini 2.5 Flash", "gemini-2.5-flash", { inputTokens: 1e6, outputTokens: 1e5 }, 0.3e6 + 0.25e6],
    [
      "Gemini 2.5 Flash-Lite",
      "gemini-2.5-flash-lite",
      { inputTokens: 1e6, outputTokens: 1e5 },
      0.1e6 + 0.04e6,
    ],
    [
      "GPT-4.1 cached input at 0.25x",
      "gpt-4.1",
      { inputTokens: 0, outputTokens: 0, cacheReadTokens: 1e6 },
      0.5e6,
    ],
    [
      "GPT-4o cached input at 0.5x",
      "gpt-4o",
      { inputTokens: 0, outputTokens: 0, cacheReadTokens: 1e6 },
      1.25e6,
    ],
    [
      "Gemini Flash cached input",
      "gemini-2.5-flash",
      { inputTokens: 0, outputTokens: 0, cacheReadTokens: 1e6 },
      0.03e6,
    ],
    ["an OpenAI dated id", "gpt-4.1-mini-2025-04-14", { inputTokens: 1e6, outputTokens: 0 }, 0.4e6],
    ["a Gemini preview id", "gemini-2.5-flash-preview-09-2025", { inputTokens: 1e6, outputTokens: 0 }, 0.3e6],
    ["a Vertex id", "claude-sonnet-4-5@20250929", { inputTokens: 1e5, outputTokens: 0 }, 0.3e6],
    // Over 200k tokens of prompt the whole call is billed at the long-context rates.
    [
      "Gemini 2.5 Pro at 200k tokens",
      "gemini-2.5-pro",
      { inputTokens: 200_000, outputTokens: 1e5 },
      0.25e6 + 1e6,
    ],
    [
      "Gemini 2.5 Pro over 200k",
      "gemini-2.5-pro",
      { inputTokens: 200_001, outputTokens: 1e5 },
      500_002.5 + 1.5e6,
    ],
    [
      "Gemini 2.5 Pro over 200k, cached tokens counted in the prompt",
      "gemini-2.5-pro",
      { inputTokens: 100_000, outputTokens: 0, cacheReadTokens: 150_000 },
      0.25e6 + 37_500,
    ],
    [
      "Sonnet 4.5 with 1M context, over 200k",
      "claude-sonnet-4-5",
      { inputTokens: 300_000, outputTokens: 1e4 },
      1.8e6 + 225_000,
    ],
  ])("%s", (_name, model, usage, micros) => {
    expect(table.costMicros(model, usage)).toBe(Math.round(micros));
    expect(table.resolve(model).known).toBe(true);
  });

  it.each(["gpt-5-pro", "o3-pro", "o1-pro", "gpt-5.4", "gpt-4.1-turbo"])(
    "does not price %s as a cheaper model whose id it starts with",
    (model) => {
      expect(table.resolve(model).known).toBe(false);
      expect(table.costMicros(model, { inputTokens: 1e6, outputTokens: 0 })).toBe(15e6);
    },
  );

  it("keeps the highest rates (unknown models, escalation ceilings) at Opus 4.1's", () => {
    expect(table.ceilingMicros({ inputTokens: 1e6, outputTokens: 1e6, cacheReadTokens: 1e6 })).toBe(
      15e6 + 75e6 + 1.5e6,
    );
  });

  it("reads long-context rates from an override, and names a missing threshold", () => {
    const prices = parsePrices(
      { "my-model": { input: 1, output: 2, longContext: { aboveInputTokens: 100, input: 10, output: 20 } } },
      "prices.json",
    );
    const t = new PriceTable(prices);
    expect(t.costMicros("my-model", { inputTokens: 100, outputTokens: 1 })).toBe(102);
    expect(t.costMicros("my-model", { inputTokens: 101, outputTokens: 1 })).toBe(1030);
    expect(() =>
      parsePrices({ m: { input: 1, output: 2, longContext: { input: 1, output: 2 } } }, "p"),
    ).toThrow(/"m"\.longContext has no "aboveInputTokens"/);
    expect(() =>
      parsePrices(
        { m: { input: 1, output: 2, longContext: { aboveInputTokens: 5, input: 1, output: 2, x: 1 } } },
        "p",
      ),
    ).toThrow(/"m"\.longContext has an unknown field "x"/);
  });

  it("charges an unknown model at the highest rate of each kind and reports it once", () => {
    const unknown: string[] = [];
    const t = new PriceTable(DEFAULT_PRICES, (m) => unknown.push(m));
    expect(t.costMicros("gpt-something", { inputTokens: 1000, outputTokens: 1000 })).toBe(15_000 + 75_000);
    t.costMicros("gpt-something", { inputTokens: 1, outputTokens: 1 });
    expect(unknown).toEqual(["gpt-something"]);
  });

  it.each([
    [[], /must be a JSON object/],
    [{ m: 3 }, /"m" must be an object/],
    [{ m: { output: 1 } }, /"m" has no "input" price/],
    [{ m: { input: -1, output: 1 } }, /"m"\.input must be a non-negative number/],
    [{ m: { input: 1, output: 1, cached: 1 } }, /unknown field "cached"/],
  ])("rejects a bad price table %j naming the model and field", (data, message) => {
    expect(() => parsePrices(data, "prices.json")).toThrow(message);
  });
});

describe("readUsage", () => {
  it.each<[string, unknown, ReturnType<typeof readUsage>]>([
    [
      "Phantom JudgeResult",
      { verdict: "pass", inputTokens: 900, outputTokens: 300, costUsd: 0.007 },
      {
        usage: { inputTokens: 900, outputTokens: 300, cacheReadTokens: 0, cacheWriteTokens: 0 },
        costUsd: 0.007,
      },
    ],
    [
      "an Anthropic Message with cache tokens",
      {
        content: [],
        usage: {
          input_tokens: 10,
          output_tokens: 5,
          cache_read_input_tokens: 100,
          cache_creation_input_tokens: 20,
        },
      },
      {
        usage: {
          inputTokens: 10,
          outputTokens: 5,
          cacheReadTokens: 100,
          cacheWriteTokens: 20,
          cacheWrite1hTokens: 0,
        },
      },
    ],
    [
      "cache writes split by lifetime",
      {
        usage: {
          input_tokens: 1,
          output_tokens: 1,
          cache_creation_input_tokens: 30,
          cache_creation: { ephemeral_5m_input_tokens: 10, ephemeral_1h_input_tokens: 20 },
        },
      },
      {
        usage: {
          inputTokens: 1,
          outputTokens: 1,
          cacheReadTokens: 0,
          cacheWriteTokens: 10,
          cacheWrite1hTokens: 20,
        },
      },
    ],
    [
      "JudgeSubprocessError.partialCost",
      Object.assign(new Error("died"), {
        partialCost: { inputTokens: 50, outputTokens: 0, costUsd: 0.00015 },
      }),
      {
        usage: { inputTokens: 50, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 },
        costUsd: 0.00015,
      },
    ],
    ["a cost without tokens", { cost_usd: 0.25 }, { costUsd: 0.25 }],
    [
      "Phantom's reflection subprocess result: a cost alone",
      { ok: true, costUsd: 0.031 },
      { costUsd: 0.031 },
    ],
    [
      "Phantom's JudgeResult: its cost beside its tokens and model",
      { verdict: "pass", inputTokens: 1200, outputTokens: 300, costUsd: 0.22, model: "claude-opus-4-6" },
      {
        usage: { inputTokens: 1200, outputTokens: 300, cacheReadTokens: 0, cacheWriteTokens: 0 },
        costUsd: 0.22,
        model: "claude-opus-4-6",
      },
    ],
    [
      "the Agent SDK's result message: total_cost_usd, usage and its only model",
      {
        type: "result",
        subtype: "success",
        total_cost_usd: 0.05,
        usage: { input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 50_000 },
        modelUsage: { "claude-haiku-4-5-20251001": { inputTokens: 10, outputTokens: 20, costUSD: 0.05 } },
      },
      {
        usage: {
          inputTokens: 10,
          outputTokens: 20,
          cacheReadTokens: 50_000,
          cacheWriteTokens: 0,
          cacheWrite1hTokens: 0,
        },
        costUsd: 0.05,
        model: "claude-haiku-4-5-20251001",
      },
    ],
    [
      "an SDK result that used two models names neither",
      {
        type: "result",
        total_cost_usd: 0.07,
        usage: { input_tokens: 1, output_tokens: 2 },
        modelUsage: { "claude-haiku-4-5": {}, "claude-sonnet-4-6": {} },
      },
      {
        usage: {
          inputTokens: 1,
          outputTokens: 2,
          cacheReadTokens: 0,
          cacheWriteTokens: 0,
          cacheWrite1hTokens: 0,
        },
        costUsd: 0.07,
      },
    ],
    [
      "an SDK error result with a cost and no usage",
      { type: "result", total_cost_usd: 0.01, usage: {} },
      { costUsd: 0.01 },
    ],
    [
      "a cost that is not a finite number >= 0 is not a cost",
      { inputTokens: 5, outputTokens: 1, costUsd: -1, total_cost_usd: Number.NaN },
      { usage: { inputTokens: 5, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 } },
    ],
    [
      "an OpenAI Chat Completions usage alone: prompt_tokens include the cached ones",
      { prompt_tokens: 1000, completion_tokens: 50, prompt_tokens_details: { cached_tokens: 600 } },
      { usage: { inputTokens: 400, outputTokens: 50, cacheReadTokens: 600 } },
    ],
    [
      "an OpenAI Chat Completion without cache details",
      { model: "gpt-4o-mini", usage: { prompt_tokens: 1000, completion_tokens: 50, total_tokens: 1050 } },
      { usage: { inputTokens: 1000, outputTokens: 50, cacheReadTokens: 0 }, model: "gpt-4o-mini" },
    ],
    [
      "an OpenAI Responses usage: input_tokens include input_tokens_details.cached_tokens",
      {
        model: "o3",
        usage: {
          input_tokens: 1000,
          input_tokens_details: { cached_tokens: 200 },
          output_tokens: 700,
          output_tokens_details: { reasoning_tokens: 600 },
        },
      },
      { usage: { inputTokens: 800, outputTokens: 700, cacheReadTokens: 200 }, model: "o3" },
    ],
    [
      "a Gemini response: thinking tokens are output, cached tokens part of the prompt",
      {
        modelVersion: "gemini-2.5-pro",
        usageMetadata: {
          promptTokenCount: 11_500,
          candidatesTokenCount: 1000,
          cachedContentTokenCount: 10_000,
          thoughtsTokenCount: 10_000,
          toolUsePromptTokenCount: 300,
        },
      },
      {
        usage: { inputTokens: 1800, outputTokens: 11_000, cacheReadTokens: 10_000 },
        model: "gemini-2.5-pro",
      },
    ],
    [
      "a Gemini usageMetadata alone, no candidates",
      { promptTokenCount: 40 },
      { usage: { inputTokens: 40, outputTokens: 0, cacheReadTokens: 0 } },
    ],
    [
      "a LangChain message's usage_metadata: input_tokens include the cache",
      {
        content: "",
        usage_metadata: {
          input_tokens: 1000,
          output_tokens: 20,
          total_tokens: 1020,
          input_token_details: { cache_read: 700, cache_creation: 100 },
        },
      },
      { usage: { inputTokens: 200, outputTokens: 20, cacheReadTokens: 700, cacheWriteTokens: 100 } },
    ],
    [
      "cached tokens beyond the prompt leave no negative input",
      { prompt_tokens: 10, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 50 } },
      { usage: { inputTokens: 0, outputTokens: 1, cacheReadTokens: 50 } },
    ],
    ["nothing usable", { verdict: "pass" }, undefined],
    ["negative tokens are not usage", { inputTokens: -5, outputTokens: 1 }, undefined],
    ["a usage in a shape no provider uses", { usage: { tokens_in: 5, tokens_out: 1 } }, undefined],
  ])("%s", (_name, value, expected) => {
    expect(readUsage(value)).toEqual(expected);
  });
});

describe("hasUnreadUsage", () => {
  it.each<[string, unknown, boolean]>([
    ["a usage object in an unknown shape", { usage: { tokens_in: 5 } }, true],
    ["an unknown usageMetadata", { usageMetadata: { n: 1 } }, true],
    ["an OpenAI usage", { usage: { prompt_tokens: 1, completion_tokens: 1 } }, false],
    ["no usage at all (charged its estimate, as documented)", { verdict: "pass" }, false],
    ["not an object", "opaque", false],
  ])("%s: %s", (_name, value, expected) => {
    expect(hasUnreadUsage(value)).toBe(expected);
  });
});

describe("CostEstimator", () => {
  const prices = new PriceTable(DEFAULT_PRICES);

  it("bounds an unknown judge's worst case by its transcript and ceiling, then learns a realistic estimate", () => {
    const e = new CostEstimator(prices);
    const cold = e.estimate("quality_assessment", "claude-sonnet-4-6", 4000);
    // One token per character plus 4 x 600 tokens of prompt, and 4096 output tokens.
    expect(cold.worst).toEqual({ inputTokens: 4000 + 2400, outputTokens: 4096 });
    expect(cold.worstMicros).toBe(6400 * 3 + 4096 * 15);
    for (let i = 0; i < 10; i++)
      e.learn("quality_assessment", "claude-sonnet-4-6", 4000, {
        inputTokens: 1600,
        outputTokens: 300 + (i % 3) * 50,
      });
    const warm = e.estimate("quality_assessment", "claude-sonnet-4-6", 4000, 4096);
    // Expected output sits near what the judge really writes, not at its 4096-token ceiling.
    expect(warm.expected.outputTokens).toBeGreaterThan(300);
    expect(warm.expected.outputTokens).toBeLessThan(500);
    expect(warm.expected.inputTokens).toBeGreaterThan(1400);
    expect(warm.expected.inputTokens).toBeLessThan(1800);
    expect(warm.worst.outputTokens).toBe(4096);
    expect(warm.worstMicros).toBeGreaterThan(warm.expectedMicros);
  });
});
