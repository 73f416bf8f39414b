// Every command's help lists every option it takes, --verbose (a global option) included.
import { beforeAll, describe, expect, it } from "vitest";
import { cli, ensureBuilt } from "../helpers/cli.js";

beforeAll(ensureBuilt, 120_000);

describe.concurrent("judge-guard COMMAND --help", () => {
  it.each(["replay", "explain", "serve", "report", "reset-sessions"])(
    "%s --help lists --verbose, and the command takes it after its name",
    async (command) => {
      const r = await cli([command, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^\s+--verbose\s+print stack traces on errors$/m);
    },
  );

  it("--verbose after the command's name is accepted like before it", async () => {
    const r = await cli(["report", "--verbose", "--db", "/nonexistent/ledger.db"]);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/unknown option/);
  });
});
