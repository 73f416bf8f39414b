import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bucketStart } from "../../src/store/buckets.js";
import { MemoryStore } from "../../src/store/memory.js";

describe("window maths", () => {
  it("a charge counts from its time until its bucket ends past the window, never early, never negative", () => {
    const BUCKET = 60_000;
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            at: fc.integer({ min: 0, max: 30 * 86_400_000 }),
            micros: fc.integer({ min: 0, max: 1e9 }),
          }),
          { maxLength: 40 },
        ),
        fc.integer({ min: 60_000, max: 7 * 86_400_000 }),
        fc.integer({ min: 0, max: 40 * 86_400_000 }),
        (charges, window, now) => {
          const store = new MemoryStore({ bucketMs: BUCKET });
          for (const c of charges) store.addUsage("k", c.at, c.micros, 1);
          const u = store.scopeUsage("k", now - window);
          // Exactly the charges whose bucket ends after the window starts.
          const expected = charges.filter((c) => bucketStart(c.at, BUCKET) + BUCKET > now - window);
          expect(u.spentMicros).toBe(expected.reduce((a, c) => a + c.micros, 0));
          expect(u.calls).toBe(expected.length);
          // Never early: everything inside the window counts.
          const inside = charges.filter((c) => c.at >= now - window);
          expect(u.spentMicros).toBeGreaterThanOrEqual(inside.reduce((a, c) => a + c.micros, 0));
        },
      ),
      { numRuns: 2000 },
    );
  });
});
