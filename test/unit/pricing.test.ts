import { describe, expect, it } from "vitest";
import { CostEstimator, DEFAULT_PRICES, PriceTable, readUsage } from "../../src/index.js";
import { parsePrices } from "../../src/pricing/prices.js";

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
    ["nothing usable", { verdict: "pass" }, undefined],
    ["negative tokens are not usage", { inputTokens: -5, outputTokens: 1 }, undefined],
  ])("%s", (_name, value, expected) => {
    expect(readUsage(value)).toEqual(expected);
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
