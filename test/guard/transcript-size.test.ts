// A request whose transcript no model accepts is refused, naming the field and the limit (issue
// 14, item 5: a 10 MB transcript line, about 2.6M tokens, was accepted and its estimate inflated
// "saved" to 99.5%). In process, in a replay (a real CLI process) and through a real sidecar.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "../../src/client/client.js";
import {
  createGuard,
  DEFAULT_MAX_TRANSCRIPT_TOKENS,
  fromEnv,
  InvalidRequestError,
  type JudgeRequest,
  LARGEST_CONTEXT_TOKENS,
} from "../../src/index.js";
import { cli, ensureBuilt } from "../helpers/cli.js";
import { SIDECAR_TOKEN, type Sidecar, startSidecar } from "../helpers/sidecar.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const sidecars: Sidecar[] = [];
beforeAll(ensureBuilt, 120_000);
afterEach(async () => {
  for (const s of sidecars.splice(0)) await s.stop();
});

const TEN_MB = "x".repeat(10 * 1024 * 1024);
const LIMIT = /the limit is 2,097,152 tokens/;

const request = (assistant: string[], extra: Partial<JudgeRequest> = {}): JudgeRequest => ({
  judge: "quality_assessment",
  model: "claude-sonnet-4-6",
  sessionKey: "k",
  userMessages: assistant.map((_, i) => `question ${i}`),
  assistantMessages: assistant,
  ...extra,
});

const judge = async () => ({ inputTokens: 1000, outputTokens: 100 });

describe("the default limit", () => {
  it("is twice the largest context window of a priced model", () => {
    expect(LARGEST_CONTEXT_TOKENS).toBe(1_048_576);
    expect(DEFAULT_MAX_TRANSCRIPT_TOKENS).toBe(2_097_152);
  });
});

describe("the library", () => {
  it("refuses a 10 MB reply, naming the field, its longest message and the limit, and records nothing", async () => {
    const ledger = join(tmp(), "ledger.db");
    const guard = createGuard({ ledger, logger: "silent" });
    const err = await guard.run(request(["A real answer.", TEN_MB]), judge).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect(err).toMatchObject({ code: "REQUEST_INVALID", field: "assistantMessages" });
    expect((err as Error).message).toMatch(/^assistantMessages: the transcript is about 2,621,4\d\d tokens/);
    expect((err as Error).message).toMatch(LIMIT);
    expect((err as Error).message).toContain(
      "its longest message is assistantMessages[1], 10,485,760 characters",
    );
    expect((err as Error).message).not.toContain("xxxx");
    // The Phantom form names the session's field; assess refuses alike.
    const session = {
      session_key: "k",
      user_messages: ["q"],
      assistant_messages: [TEN_MB],
    };
    await expect(guard.run({ judge: "j", model: "claude-sonnet-4-6", session }, judge)).rejects.toMatchObject(
      {
        field: "session.assistant_messages",
      },
    );
    expect(() => guard.assess({ session }, { judges: [{ judge: "j", model: "claude-haiku-4-5" }] })).toThrow(
      InvalidRequestError,
    );
    // A refused request changes nothing: no decision, no stuck state, no spend.
    expect(guard.session("k")).toMatchObject({ stuck: false, calls: 0, spentUsd: 0 });
    await guard.close();
    const db = new Database(ledger, { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM decisions").get()).toEqual({ n: 0 });
    db.close();
  });

  it("judges a transcript just under the limit, and takes another limit, or none", async () => {
    const uncapped = { sessionBudgetUsd: Infinity, dailyBudgetUsd: Infinity } as const;
    const guard = createGuard({ ledger: ":memory:", logger: "silent", ...uncapped });
    const under = "y".repeat(DEFAULT_MAX_TRANSCRIPT_TOKENS * 4 - 100);
    expect((await guard.run(request([under]), judge)).status).toBe("judged");
    await guard.close();
    const strict = createGuard({ ledger: ":memory:", logger: "silent", maxTranscriptTokens: 100 });
    await expect(strict.run(request(["z".repeat(401)]), judge)).rejects.toThrow(/the limit is 100 tokens/);
    await strict.close();
    const none = createGuard({
      ledger: ":memory:",
      logger: "silent",
      maxTranscriptTokens: Infinity,
      ...uncapped,
    });
    expect((await none.run(request([TEN_MB]), judge)).status).toBe("judged");
    await none.close();
  });

  it("counts a resent transcript from what it added, and a different one whole", async () => {
    const guard = createGuard({ ledger: ":memory:", logger: "silent", maxTranscriptTokens: 100 });
    const turn = (replies: string[]) => ({ ...request(replies), userMessages: replies.map(() => "") });
    const first = ["a".repeat(200), "b".repeat(200)];
    expect((await guard.run(turn(first), judge)).status).toBe("judged"); // 400 characters: 100 tokens
    await expect(guard.run(turn([...first, "c"]), judge)).rejects.toThrow(/about 101 tokens/);
    expect((await guard.run(turn(first), judge)).status).toBe("reused"); // the refusal changed nothing
    await expect(guard.run(turn(["d".repeat(401)]), judge)).rejects.toThrow(
      /about 101 tokens .*its longest message is assistantMessages\[0\], 401 characters/,
    );
    expect((await guard.run(turn(["e".repeat(400)]), judge)).status).toBe("judged");
    await guard.close();
  });

  it("reads JUDGE_GUARD_MAX_TRANSCRIPT_TOKENS, and names it when it is wrong", () => {
    expect(fromEnv({ JUDGE_GUARD_MAX_TRANSCRIPT_TOKENS: "none" }).maxTranscriptTokens).toBe(Infinity);
    expect(fromEnv({ JUDGE_GUARD_MAX_TRANSCRIPT_TOKENS: "500000" }).maxTranscriptTokens).toBe(500_000);
    expect(() => fromEnv({ JUDGE_GUARD_MAX_TRANSCRIPT_TOKENS: "2M" })).toThrow(
      /JUDGE_GUARD_MAX_TRANSCRIPT_TOKENS="2M" is not valid: expected a whole number >= 1, or "none"/,
    );
  });
});

describe("replay", () => {
  it("reports a 10 MB line as invalid, naming the line, the field and the limit; the saving is not inflated", async () => {
    const line = (key: string, reply: string, ts: string) =>
      JSON.stringify({
        ts,
        judge: "quality_assessment",
        model: "claude-sonnet-4-6",
        session: { session_key: key, user_messages: ["hi"], assistant_messages: [reply] },
        usage: { input_tokens: 1000, output_tokens: 100 },
      });
    const file = join(tmp(), "big.jsonl");
    writeFileSync(
      file,
      `${line("a", "Hello, how can I help?", "2026-11-20T08:00:00Z")}\n${line("b", TEN_MB, "2026-11-20T08:00:01Z")}\n`,
    );
    const r = await cli(["replay", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /big\.jsonl: line 2: session\.assistant_messages: the transcript is about 2,621,4\d\d tokens \(10,485,76\d characters at 4 a token\), more than any model accepts: the limit is 2,097,152 tokens/,
    );
    expect(r.stdout).toMatch(/^ {2}invalid\s+1 line /m);
    expect(r.stdout).toMatch(/: 0\.0% saved$/m);
  }, 30_000);
});

describe("the sidecar", () => {
  it("answers 400 naming the wire's field and the limit; the client throws it as the guard does", async () => {
    // 1 character a token: a 3 MB transcript (a body under the 8 MiB cap) is 3M tokens.
    const s = await startSidecar(join(tmp(), "ledger.db"), { JUDGE_GUARD_CHARS_PER_TOKEN: "1" });
    sidecars.push(s);
    const big = ["u", "v", "w"].map((c) => c.repeat(1_000_000));
    const res = await fetch(`${s.url}/v1/admit`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${SIDECAR_TOKEN}` },
      body: JSON.stringify({
        judge: "quality_assessment",
        model: "gemini-2.5-pro",
        session_key: "k",
        user_messages: big,
        assistant_messages: ["A short answer."],
      }),
    });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { code: string; field: string; message: string } };
    expect(error).toMatchObject({ code: "REQUEST_INVALID", field: "user_messages" });
    expect(error.message).toMatch(/^user_messages: the transcript is about 3,000,015 tokens/);
    expect(error.message).toMatch(LIMIT);
    expect(error.message).toContain("its longest message is user_messages[0], 1,000,000 characters");

    const client = createClient({ url: s.url, token: SIDECAR_TOKEN });
    await expect(
      client.run(
        {
          judge: "j",
          model: "gpt-4.1",
          session: { session_key: "k", user_messages: big, assistant_messages: [] },
        },
        judge,
      ),
    ).rejects.toMatchObject({ field: "session.user_messages" });
  }, 30_000);
});
