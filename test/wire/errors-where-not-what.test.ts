// Errors say where input went wrong, never what it said (issue 13, item 9): V8's JSON messages
// and short values quoted in InvalidRequestError carried 10-40 characters of transcript text
// into stderr, decision files and client logs.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { createGuard, type JudgeRequest } from "../../src/index.js";
import { createLogger } from "../../src/log/logger.js";
import { serve } from "../../src/server/server.js";
import { findJsonSyntaxError } from "../../src/util/json-error.js";
import { cli, ensureBuilt } from "../helpers/cli.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
beforeAll(ensureBuilt, 120_000);

const request = (key: string): JudgeRequest => ({
  judge: "observation_extraction",
  model: "claude-sonnet-4-6",
  sessionKey: key,
  userMessages: ["run the tests"],
  assistantMessages: ["2 of 38 tests fail, both in the invoice suite"],
});

describe("errors say where, never what", () => {
  const SECRET = "my diagnosis is hypertension";

  it("replay: a line that is not JSON is reported by line and column, without its text", async () => {
    const good = JSON.stringify({
      ts: "2026-11-20T08:00:00Z",
      judge: "j",
      model: "claude-sonnet-4-6",
      session: { session_key: "k", user_messages: ["q"], assistant_messages: ["a"] },
    });
    const bad = `{"ts":"2026-11-20T08:01:00Z","judge":"j","session":{"user_messages":["${SECRET}" oops]}}`;
    const file = join(tmp(), "bad.jsonl");
    const decisions = join(tmp(), "decisions.jsonl");
    const ledger = join(tmp(), "ledger.db");
    writeFileSync(file, `${good}\n${bad}\n`);
    const r = await cli(["replay", file, "--no-progress", "--db", ledger, "--decisions", decisions]);
    expect(r.code).toBe(1);
    const column = bad.indexOf(" oops") + 2;
    expect(r.stderr).toContain(
      `bad.jsonl: line 2: (line): not valid JSON (line 1, column ${column}: expected , or ] after a value)`,
    );
    for (const text of [
      r.stdout,
      r.stderr,
      readFileSync(decisions, "utf8"),
      readFileSync(ledger, "latin1"),
    ]) {
      expect(text).not.toContain("hypertension");
      expect(text).not.toContain("diagnosis");
    }
  });

  it.each([
    [
      "userMessages",
      { userMessages: SECRET },
      /^userMessages must be an array of strings, got a string of 28 characters$/,
    ],
    ["session", { session: SECRET }, /^session must be an object, got a string of 28 characters$/],
    [
      "maxTokens",
      { maxTokens: SECRET },
      /^maxTokens must be a positive integer, got a string of 28 characters$/,
    ],
    [
      "sessionKey",
      { sessionKey: "" },
      /^sessionKey must be a non-empty string, got a string of 0 characters$/,
    ],
  ])("InvalidRequestError for %s names the field and the length", async (_name, bad, message) => {
    const guard = createGuard({ ledger: ":memory:", logger: "silent" });
    const error = await guard
      .run({ ...request("k"), ...(bad as Partial<JudgeRequest>) } as JudgeRequest, async () => 1)
      .catch((e: unknown) => e as Error);
    await guard.close();
    expect(error).toMatchObject({ code: "REQUEST_INVALID" });
    expect((error as Error).message).toMatch(message);
  });

  it("the sidecar: a body that is not JSON is answered with its line and column, without its text", async () => {
    const guard = createGuard({ ledger: ":memory:", logger: "silent" });
    const running = await serve({ guard, log: createLogger("silent"), port: 0 });
    try {
      const body = `{"judge": "j",\n "user_messages": ["${SECRET}" "second"]}`;
      const res = await fetch(`${running.url}/v1/admit`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      const answer = (await res.json()) as { error: { code: string; message: string } };
      expect(res.status).toBe(400);
      expect(answer.error).toEqual({
        code: "BODY_INVALID",
        message: `the body is not valid JSON (line 2, column ${body.split("\n")[1]!.indexOf(' "second"') + 2}: expected , or ] after a value)`,
      });
    } finally {
      await running.close();
    }
  });

  it("the locator agrees with JSON.parse on what is valid", () => {
    const cases = [
      "",
      " ",
      "{}",
      "[]",
      '{"a":[1,2,{"b":null}],"c":"\\u00e9\\n"}',
      "[1,]",
      '{"a":1,}',
      '{"a" 1}',
      "{a:1}",
      "01",
      "-",
      "1.",
      "1e",
      "tru",
      '"abc',
      '"a\tb"',
      '"\\x"',
      '"\\u12"',
      "[1] 2",
      "[".repeat(10_000),
      `${"[".repeat(10_000)}${"]".repeat(10_000)}`,
      '"\ud800"',
    ];
    for (const text of cases) {
      let valid = true;
      try {
        JSON.parse(text);
      } catch {
        valid = false;
      }
      expect(findJsonSyntaxError(text) === undefined, JSON.stringify(text.slice(0, 20))).toBe(valid);
    }
    // And on JSON with one character dropped, doubled or changed.
    fc.assert(
      fc.property(
        fc.json(),
        fc.nat(),
        fc.constantFrom("drop", "double", "swap"),
        fc.string({ maxLength: 1 }),
        (json, n, edit, c) => {
          const i = json.length === 0 ? 0 : n % json.length;
          const text =
            edit === "drop"
              ? json.slice(0, i) + json.slice(i + 1)
              : edit === "double"
                ? json.slice(0, i + 1) + json.slice(i)
                : json.slice(0, i) + c + json.slice(i + 1);
          let valid = true;
          try {
            JSON.parse(text);
          } catch {
            valid = false;
          }
          const found = findJsonSyntaxError(text);
          expect(found === undefined).toBe(valid);
          if (found) expect(found.offset).toBeLessThanOrEqual(text.length);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
