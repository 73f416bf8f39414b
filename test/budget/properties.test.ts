import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { admit, type ScopeUsage } from "../../src/index.js";

describe("budget arithmetic", () => {
  const micros = fc.integer({ min: 0, max: 1e12 });
  const scope = fc.record<ScopeUsage>({
    spentMicros: micros,
    calls: fc.integer({ min: 0, max: 1e6 }),
    openCount: fc.integer({ min: 0, max: 1000 }),
    openExpectedMicros: micros,
    openWorstMicros: micros,
  });
  const cap = fc.oneof(micros, fc.constant(Number.POSITIVE_INFINITY));

  it("admission never answers NaN or a negative amount, and refuses only what does not fit", () => {
    fc.assert(
      fc.property(
        scope,
        scope,
        micros,
        micros,
        cap,
        fc.oneof(fc.integer({ min: 1, max: 1e6 }), fc.constant(Infinity)),
        cap,
        (session, global, expected, extra, sessionCap, maxCalls, globalCap) => {
          const want = { expectedMicros: expected, worstMicros: expected + extra };
          const r = admit({ session, global }, want, {
            sessionBudgetMicros: sessionCap,
            sessionMaxCalls: maxCalls,
            globalBudgetMicros: globalCap,
          });
          if (r === null) {
            expect(session.calls + session.openCount + 1).toBeLessThanOrEqual(maxCalls);
            expect(session.spentMicros + session.openExpectedMicros + expected).toBeLessThanOrEqual(
              sessionCap,
            );
            expect(global.spentMicros + global.openExpectedMicros + expected).toBeLessThanOrEqual(globalCap);
          } else {
            expect(Number.isNaN(r.used) || Number.isNaN(r.cap)).toBe(false);
            expect(r.used).toBeGreaterThanOrEqual(0);
            // Every refusal is justified by the scope it names.
            if (r.reason === "session_calls") {
              expect(r.cap).toBe(maxCalls);
              expect(session.calls + session.openCount + 1).toBeGreaterThan(maxCalls);
            } else {
              const [u, c] = r.reason === "session_budget" ? [session, sessionCap] : [global, globalCap];
              expect(r.cap).toBe(c);
              expect(c).toBeLessThan(Number.POSITIVE_INFINITY);
              const expectedOver = u.spentMicros + u.openExpectedMicros + expected > c;
              const worstOver = u.openCount > 0 && u.spentMicros + u.openWorstMicros + want.worstMicros > c;
              expect(expectedOver || worstOver).toBe(true);
              // Waiting can only help while other calls are in flight.
              if (r.concurrency) expect(u.openCount).toBeGreaterThan(0);
            }
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});
