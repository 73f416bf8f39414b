import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { admitBody, settleBody } from "../../src/wire/schema.js";

describe("hostile input", () => {
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
});
