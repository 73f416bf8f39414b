import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_PRICES, PriceTable } from "../../src/index.js";

describe("budget arithmetic", () => {
  it("costs are whole micro-dollars, never negative, and add up without drift", () => {
    // Rounding drift is measured on flat rates: above a long-context threshold a call is billed
    // at other rates, so costs of calls do not add up to the cost of their sum (see below).
    const flat = Object.fromEntries(
      Object.entries(DEFAULT_PRICES).map(([model, { longContext: _, ...rates }]) => [model, rates]),
    );
    const prices = new PriceTable(flat);
    const tokens = fc.integer({ min: 0, max: 10_000_000 });
    const usage = fc.record({
      inputTokens: tokens,
      outputTokens: tokens,
      cacheReadTokens: tokens,
      cacheWriteTokens: tokens,
    });
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.keys(DEFAULT_PRICES)),
        fc.array(usage, { minLength: 1, maxLength: 50 }),
        (model, calls) => {
          const each = calls.map((u) => prices.costMicros(model, u));
          for (const c of each) {
            expect(Number.isSafeInteger(c)).toBe(true);
            expect(c).toBeGreaterThanOrEqual(0);
          }
          const total = calls.reduce(
            (a, u) => ({
              inputTokens: a.inputTokens + u.inputTokens,
              outputTokens: a.outputTokens + u.outputTokens,
              cacheReadTokens: a.cacheReadTokens + u.cacheReadTokens,
              cacheWriteTokens: a.cacheWriteTokens + u.cacheWriteTokens,
            }),
            { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 },
          );
          // Each call rounds to the nearest micro-dollar once: the sum stays within half a micro-dollar a call.
          expect(
            Math.abs(each.reduce((a, b) => a + b, 0) - prices.costMicros(model, total)),
          ).toBeLessThanOrEqual(calls.length);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("more tokens never cost less, across a long-context threshold too", () => {
    const prices = new PriceTable(DEFAULT_PRICES);
    const tokens = fc.integer({ min: 0, max: 1_000_000 });
    const usage = fc.record({
      inputTokens: tokens,
      outputTokens: tokens,
      cacheReadTokens: tokens,
      cacheWriteTokens: tokens,
    });
    const kinds = ["inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens"] as const;
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.keys(DEFAULT_PRICES)),
        usage,
        fc.constantFrom(...kinds),
        fc.integer({ min: 1, max: 400_000 }),
        (model, u, kind, more) => {
          const bigger = { ...u, [kind]: u[kind] + more };
          expect(prices.costMicros(model, bigger)).toBeGreaterThanOrEqual(prices.costMicros(model, u));
          expect(prices.ceilingMicros(bigger)).toBeGreaterThanOrEqual(prices.costMicros(model, bigger));
        },
      ),
      { numRuns: 2000 },
    );
  });
});
