import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { createGuard } from "../../src/index.js";
import { captureLogs } from "../helpers/logs.js";
import { sessionRequest } from "../helpers/requests.js";

describe("logs", () => {
  it("say what happened with keys, fingerprints and counts, never transcript text", async () => {
    const { logger, lines, text } = captureLogs("trace");
    const canary = "CANARY-0b5e-tangerine";
    const guard = createGuard({ ledger: ":memory:", logger, signals: [{ name: "cb", send: () => {} }] });
    const canned = `Still busy with ${canary}, please wait.`;
    const users = [`fix ${canary}`, "hello?", "anyone?", "now?"];
    const replies = [`Fixed ${canary} in api.ts.`, canned, canned, canned];
    for (let i = 1; i <= 4; i++)
      await guard.run(
        sessionRequest("cli:cli:local", users.slice(0, i), replies.slice(0, i)),
        async () => "no usage",
      );
    await guard.run(
      sessionRequest("cli:cli:local", [...users, "back?"], [...replies, `Back. ${canary} is done.`]),
      async () => "no usage",
    );
    await guard.close();
    expect(text()).not.toContain(canary);
    expect(text()).not.toContain("Still busy");
    const stuck = lines.find((l) => l.msg === "session is stuck: judging stops until it recovers");
    expect(stuck).toMatchObject({ sessionKey: "cli:cli:local", repeats: 3, evidence: "repeats" });
    expect(stuck?.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(lines.some((l) => l.msg === "session recovered: judging resumes")).toBe(true);
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
