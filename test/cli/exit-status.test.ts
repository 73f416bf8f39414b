import { describe, expect, it } from "vitest";
import { exitStatus, InputError, UsageError } from "../../src/cli/errors.js";
import { ConfigError, LedgerReadError, LedgerSchemaError, PhantomDbError } from "../../src/errors.js";

describe("the CLI's exit status, by error code", () => {
  it.each([
    ["a usage error", new UsageError("--by applies to --format csv only"), 2],
    ["a configuration error", ConfigError.variable("JUDGE_GUARD_CONCURRENCY", "0", "a whole number >= 1"), 2],
    ["an input cut short", new InputError("traffic.jsonl.gz is truncated after line 7"), 1],
    ["a ledger that cannot be read", new LedgerReadError("no ledger at x.db"), 1],
    ["a path that is no ledger", new LedgerSchemaError("x.db is not a judge-guard ledger"), 1],
    ["Phantom's database", new PhantomDbError("p.db", "Phantom's database p.db does not exist"), 1],
    ["an error without a code (a bug)", new TypeError("x is not a function"), 1],
    ["a code another installed copy knows and this one does not", brandedWithCode("SOMETHING_NEW"), 1],
  ])("%s: %i", (_, error, status) => {
    expect(exitStatus(error)).toBe(status);
  });
});

/** An error of another copy of judge-guard: the brand, a code this copy has no row for. */
function brandedWithCode(code: string): Error {
  return Object.assign(new Error("from elsewhere"), { code, [Symbol.for("judge-guard.error")]: true });
}
