import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { signReply } from "../../src/fingerprint/fingerprint.js";
import { DEFAULT_SIMILARITY, nearWords, sameReply } from "../../src/fingerprint/similarity.js";
import { normalizeRequest } from "../../src/guard/request.js";
import {
  admit,
  DEFAULT_PRICES,
  fingerprint,
  isJudgeGuardError,
  normalize,
  PriceTable,
  type ScopeUsage,
} from "../../src/index.js";
import { parseLine } from "../../src/replay/line.js";
import { bucketStart } from "../../src/store/buckets.js";
import { MemoryStore } from "../../src/store/memory.js";
import { admitBody, settleBody } from "../../src/wire/schema.js";

// Text of every kind: ASCII, any Unicode, lone surrogates and NUL included.
const anyText = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.string({ unit: "grapheme" }));

describe("normalisation and fingerprints, on any input", () => {
  it("normalising is idempotent and never throws", () => {
    fc.assert(
      fc.property(anyText, (s) => {
        const once = normalize(s);
        expect(normalize(once)).toBe(once);
      }),
      { numRuns: 2000 },
    );
  });

  it("a fingerprint is 16 hex digits and does not change when only the digits change", () => {
    const withDigits = fc.tuple(
      fc.string(),
      fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 20 }),
    );
    fc.assert(
      fc.property(withDigits, ([text, digits]) => {
        let k = 0;
        const a = text.replace(/\d/g, () => String(digits[k++ % digits.length]));
        const b = text.replace(/\d/g, (d) => String((Number(d) + 7) % 10));
        expect(fingerprint(a)).toMatch(/^[0-9a-f]{16}$/);
        expect(fingerprint(a)).toBe(fingerprint(b));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("near-duplicate replies, on any input", () => {
  const words = fc.array(fc.constantFrom("please", "wait", "deploy", "the", "build", "42", "ok", "é"), {
    maxLength: 40,
  });
  it("counting words without splitting agrees with splitting, so the shortcut never changes a verdict", () => {
    fc.assert(
      fc.property(anyText, (s) => {
        const sig = signReply(s);
        const counted = sig.wordCount;
        expect(counted).toBe(sig.words.length);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(words, words, (a, b) => {
        const x = signReply(a.join(" "));
        const y = signReply(b.join(" "));
        fc.pre(x.normalized !== y.normalized);
        // With no boilerplate, two different replies are the same reply iff their words are near.
        expect(sameReply(x, y, new Set())).toBe(nearWords(x.words, y.words, DEFAULT_SIMILARITY));
      }),
      { numRuns: 2000 },
    );
  });
});

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

describe("hostile input", () => {
  const hostile = fc.oneof(
    anyText,
    fc.json(),
    fc.constantFrom(
      '{"__proto__":{"polluted":true},"ts":"2026-11-20T08:00:00Z"}',
      '{"ts":"2026-11-20T08:00:00Z","judge":"j","model":"m","session":{"session_key":"k","user_messages":[],"assistant_messages":[]},"usage":{"input_tokens":"12","output_tokens":1}}',
      '{"ts":"2026-11-20T08:00:00Z","judge":"j","model":"m","session":{"session_key":"k","user_messages":[],"assistant_messages":[]},"usage":{"input_tokens":1e999,"output_tokens":1}}',
      `${"[".repeat(100_000)}${"]".repeat(100_000)}`,
      `{"ts":"2026-11-20T08:00:00Z","judge":"${"x".repeat(1_000_000)}"}`,
      '{"ts":"2026-11-20T08:00:00Z","judge":"\\ud800","model":"\\u0000"}',
    ),
  );

  it("the replay parser answers every line, valid or not, and never throws", () => {
    fc.assert(
      fc.property(hostile, (line) => {
        const r = parseLine(line);
        if (!r.ok) expect(r.field.length).toBeGreaterThan(0);
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      }),
      { numRuns: 1500 },
    );
  });

  it("the server's request schemas answer any JSON value without throwing", () => {
    const value = fc.oneof(
      fc.anything(),
      fc.json().map((j) => JSON.parse(j)),
      fc.constantFrom(
        { __proto__: { admin: true } },
        JSON.parse('{"__proto__":{"admin":true},"judge":"j"}'),
        { judge: "j", model: "m", session_key: "k", max_tokens: "12" },
        { reservation_id: "x", ok: "true" },
      ),
    );
    let tried = 0;
    fc.assert(
      fc.property(value, (v) => {
        tried++;
        for (const schema of [admitBody, settleBody]) {
          const r = schema.safeParse(v);
          if (!r.success) expect(r.error.issues.length).toBeGreaterThan(0);
        }
        expect(({} as Record<string, unknown>).admin).toBeUndefined();
      }),
      { numRuns: 3000 },
    );
    expect(tried).toBe(3000);
  });

  it("a request is either valid or refused with an error naming the field", () => {
    const value = fc.oneof(
      fc.anything(),
      fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, "12", "\u0000", "\ud800"),
    );
    const request = fc.record(
      {
        judge: value,
        model: value,
        sessionKey: value,
        userMessages: fc.oneof(value, fc.array(value)),
        assistantMessages: fc.oneof(value, fc.array(value)),
        maxTokens: value,
        session: value,
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(request, (r) => {
        try {
          normalizeRequest(r as never);
        } catch (e) {
          expect(isJudgeGuardError(e)).toBe(true);
          expect((e as { field?: string }).field).toBeTruthy();
        }
      }),
      { numRuns: 3000 },
    );
  });
});
