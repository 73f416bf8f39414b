// Under Bun, better-sqlite3 does not run: createGuard(fromEnv()) must say so, and say what to do,
// before it creates anything (an empty data/judge-guard.db was left behind, which `report` later
// called "not a ledger").
import { execFile } from "node:child_process";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, ROOT } from "../helpers/cli.js";
import { useTempDir } from "../helpers/tmp.js";

const tempDir = useTempDir();
const BUN = join(ROOT, "node_modules", ".bin", "bun");
const INDEX = pathToFileURL(join(ROOT, "dist", "index.js")).href;

beforeAll(ensureBuilt, 120_000);

/** Runs `code` (an ES module) under Bun in a fresh folder; its last stdout line is JSON. */
function underBun(code: string, env: Record<string, string> = {}): Promise<{ out: unknown; cwd: string }> {
  const cwd = tempDir();
  writeFileSync(join(cwd, "main.mjs"), code);
  const base: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? cwd };
  return new Promise((resolve, reject) =>
    execFile(BUN, ["main.mjs"], { cwd, env: { ...base, ...env }, timeout: 30_000 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${err.message}\n${stderr}`))
        : resolve({ out: JSON.parse(stdout.trim().split("\n").at(-1)!), cwd }),
    ),
  );
}

const TRY = (make: string) => `
import { createGuard, fromEnv, MemoryStore, SqliteStore } from ${JSON.stringify(INDEX)};
try {
  const guard = ${make};
  const outcome = await guard.run(
    { judge: "quality", model: "claude-haiku-4-5", sessionKey: "k", userMessages: ["hi"], assistantMessages: ["Hello there, how can I help?"] },
    () => ({ usage: { input_tokens: 10, output_tokens: 5 } }),
  );
  await guard.close();
  console.log(JSON.stringify({ status: outcome.status }));
} catch (e) {
  console.log(JSON.stringify({ name: e.name, code: e.code, setting: e.setting, message: e.message }));
}
`;

describe("createGuard under Bun", () => {
  it("with the default ledger: a ConfigError saying what to do, and no file or folder created", async () => {
    const { out, cwd } = await underBun(TRY("createGuard(fromEnv())"));
    expect(out).toMatchObject({ name: "ConfigError", code: "CONFIG_INVALID", setting: "ledger" });
    const message = (out as { message: string }).message;
    expect(message).toMatch(/^a SQLite ledger needs better-sqlite3, which does not run under Bun: /);
    expect(message).toContain('JUDGE_GUARD_DB=":memory:"');
    expect(message).toContain("judge-guard sidecar on Node");
    expect(message).not.toMatch(/give --db/);
    expect(readdirSync(cwd)).toEqual(["main.mjs"]);
  });

  it("new SqliteStore(path) leaves no file either", async () => {
    const { out, cwd } = await underBun(TRY('createGuard({ ledger: new SqliteStore("ledger/jg.db") })'));
    expect(out).toMatchObject({ code: "CONFIG_INVALID" });
    expect(readdirSync(cwd)).toEqual(["main.mjs"]);
  });

  it('JUDGE_GUARD_DB=":memory:" is what works: the guard runs in process', async () => {
    const { out, cwd } = await underBun(TRY("createGuard(fromEnv())"), { JUDGE_GUARD_DB: ":memory:" });
    expect(out).toEqual({ status: "judged" });
    expect(readdirSync(cwd)).toEqual(["main.mjs"]);
  });
});
