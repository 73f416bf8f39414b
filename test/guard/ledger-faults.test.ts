import { execFile } from "node:child_process";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createGuard, isJudgeSkippedError, type JudgeRequest, SqliteStore } from "../../src/index.js";
import { connectionOf } from "../../src/store/sqlite.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();

/** A pino logger that keeps every line it writes. */
function capturingLogger(level = "trace") {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

const request = (users: string[], replies: string[], key = "k"): JudgeRequest => ({
  judge: "observation_extraction",
  model: "claude-sonnet-4-6",
  session: { session_key: key, user_messages: users, assistant_messages: replies },
});

describe("when the ledger itself fails", () => {
  it.each([
    ["closed", "skipped"],
    ["open", "judged"],
  ] as const)(
    "JUDGE_GUARD_ON_ERROR=%s: the call is %s, the failure is logged and counted, the host is not thrown at",
    async (onError, status) => {
      const store = new SqliteStore(join(tmp(), "ledger.db"));
      const { logger, lines } = capturingLogger("warn");
      const guard = createGuard({ ledger: store, logger, onError });
      connectionOf(store).close(); // the file is gone from under the guard
      let called = 0;
      const out = await guard.run(request(["q"], ["a real answer"]), async () => {
        called++;
        return { inputTokens: 10, outputTokens: 10 };
      });
      expect(out.status).toBe(status);
      expect(called).toBe(status === "judged" ? 1 : 0);
      if (out.status === "skipped") {
        expect(out.code).toBe("LEDGER_UNAVAILABLE");
        expect(isJudgeSkippedError(out.error, "LEDGER_UNAVAILABLE")).toBe(true);
        expect(out.error.message).toMatch(/ledger failed .*failing closed/);
      }
      expect(guard.stats.ledgerErrors).toBeGreaterThanOrEqual(1);
      expect(lines.some((l) => JSON.parse(l).msg === "ledger failure")).toBe(true);
      await expect(guard.close()).resolves.toBeUndefined();
    },
  );
});

describe("logs", () => {
  it("say what happened with keys, fingerprints and counts, never transcript text", async () => {
    const { logger, lines } = capturingLogger("trace");
    const canary = "CANARY-0b5e-tangerine";
    const guard = createGuard({ ledger: ":memory:", logger, signals: [{ name: "cb", send: () => {} }] });
    const canned = `Still busy with ${canary}, please wait.`;
    const users = [`fix ${canary}`, "hello?", "anyone?", "now?"];
    const replies = [`Fixed ${canary} in api.ts.`, canned, canned, canned];
    for (let i = 1; i <= 4; i++)
      await guard.run(
        request(users.slice(0, i), replies.slice(0, i), "cli:cli:local"),
        async () => "no usage",
      );
    await guard.run(
      request([...users, "back?"], [...replies, `Back. ${canary} is done.`], "cli:cli:local"),
      async () => "no usage",
    );
    await guard.close();
    const text = lines.join("\n");
    expect(text).not.toContain(canary);
    expect(text).not.toContain("Still busy");
    const stuck = lines
      .map((l) => JSON.parse(l))
      .find((l) => l.msg === "session is stuck: judging stops until it recovers");
    expect(stuck).toMatchObject({ sessionKey: "cli:cli:local", repeats: 3, evidence: "repeats" });
    expect(stuck.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(lines.some((l) => JSON.parse(l).msg === "session recovered: judging resumes")).toBe(true);
  });

  it("are quiet by default: nothing below warn", async () => {
    // The default logger writes to stderr: run a guard created without one in a process of its own.
    const script = fileURLToPath(new URL("../fixtures/processes/log-default.mjs", import.meta.url));
    const run = promisify(execFile);
    const quiet = await run(process.execPath, [script]);
    expect(quiet.stderr).toBe("");
    // The same session at level info does log (stuck, then recovered): the quiet run is not empty by accident.
    const chatty = await run(process.execPath, [script, "info"]);
    expect(chatty.stderr).toContain("session is stuck: judging stops until it recovers");
  });
});
