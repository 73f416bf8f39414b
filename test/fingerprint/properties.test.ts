import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { signReply } from "../../src/fingerprint/fingerprint.js";
import { DEFAULT_SIMILARITY, nearWords, sameReply } from "../../src/fingerprint/similarity.js";
import { fingerprint, normalize } from "../../src/index.js";
import { anyText } from "../helpers/arbitraries.js";

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
