import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { normalizeRequest } from "../../src/guard/request.js";
import { isJudgeGuardError } from "../../src/index.js";

describe("hostile input", () => {
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
