import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseLine } from "../../src/replay/line.js";
import { anyText } from "../helpers/arbitraries.js";

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
});
