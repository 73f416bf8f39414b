// The operator actions of `judge-guard/client` against a real `judge-guard serve` child process
// (issue 14, item 7: `session` and `resetSession` threw "not a function").
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "../../src/client/client.js";
import { InvalidRequestError, isJudgeGuardError } from "../../src/index.js";
import { ensureBuilt } from "../helpers/cli.js";
import { CANNED } from "../helpers/replies.js";
import { sessionRequest } from "../helpers/requests.js";
import { freePort, SIDECAR_TOKEN, type Sidecar, startSidecar } from "../helpers/sidecar.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const sidecars: Sidecar[] = [];
beforeAll(ensureBuilt, 120_000);
afterEach(async () => {
  for (const s of sidecars.splice(0)) await s.stop();
});

const KEY = "slack:C07 OPS:1795170600.204";

async function sidecar(env: NodeJS.ProcessEnv = {}): Promise<Sidecar> {
  const s = await startSidecar(join(tmp(), "ledger.db"), env);
  sidecars.push(s);
  return s;
}

const turn = (users: string[], replies: string[]) =>
  sessionRequest(KEY, users, replies, "quality_assessment");
const judge = async () => ({ inputTokens: 2000, outputTokens: 600 }); // $0.015

describe("client.session and client.resetSession", () => {
  it("report a stuck key, end its episode, and judging resumes", async () => {
    const s = await sidecar();
    const client = createClient({ url: s.url, token: SIDECAR_TOKEN });
    expect((await client.run(turn(["q1"], ["A real answer about the deploy."]), judge)).status).toBe(
      "judged",
    );
    await client.run(turn(["q1", "q2"], ["A real answer about the deploy.", CANNED]), judge);
    const users = ["q1", "q2", "q3"];
    const stuck = await client.run(turn(users, ["A real answer about the deploy.", CANNED, CANNED]), judge);
    expect(stuck).toMatchObject({ status: "skipped", code: "STUCK_SESSION" });

    const state = await client.session(KEY);
    expect(state).toEqual({
      sessionKey: KEY,
      stuck: true,
      episodeId: expect.any(String),
      fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/),
      repeats: 2,
      spentUsd: 0.03,
      calls: 2,
      budgetUsd: 5,
      maxCalls: 1000,
    });

    const after = await client.resetSession(KEY);
    expect(after).toMatchObject({ sessionKey: KEY, stuck: false, episodeId: null, spentUsd: 0.03, calls: 2 });
    expect(await client.session(KEY)).toEqual(after);
    // The replies so far stop counting: a new message with a real answer is judged.
    const resumed = await client.run(
      turn(
        [...users, "q4"],
        ["A real answer about the deploy.", CANNED, CANNED, "The rollback plan is ready."],
      ),
      judge,
    );
    expect(resumed.status).toBe("judged");
  });

  it("report no cap as Infinity, as the guard does", async () => {
    const s = await sidecar({
      JUDGE_GUARD_SESSION_BUDGET_USD: "none",
      JUDGE_GUARD_SESSION_MAX_CALLS: "none",
    });
    const client = createClient({ url: s.url, token: SIDECAR_TOKEN });
    expect(await client.session("never-seen")).toMatchObject({
      stuck: false,
      calls: 0,
      budgetUsd: Number.POSITIVE_INFINITY,
      maxCalls: Number.POSITIVE_INFINITY,
    });
  });

  it("refuses a key the route cannot name, before asking", async () => {
    const s = await sidecar();
    const client = createClient({ url: s.url, token: SIDECAR_TOKEN });
    for (const key of ["a/b", "a\\b", "..", ""]) {
      const err = await client.session(key).catch((e: unknown) => e);
      expect(err, key).toBeInstanceOf(InvalidRequestError);
      expect(err).toMatchObject({ field: "sessionKey" });
    }
    expect(client.stats.unreachable).toBe(0);
  });

  it("throw SidecarUnreachableError when the sidecar does not answer or refuses the token", async () => {
    const down = createClient({ url: `http://127.0.0.1:${await freePort()}`, timeoutMs: 500 });
    for (const action of [() => down.session("k"), () => down.resetSession("k")]) {
      const err = await action().catch((e: unknown) => e);
      expect(isJudgeGuardError(err) && err.code).toBe("SIDECAR_UNREACHABLE");
      expect((err as Error).message).toMatch(/did not answer.*; the operator action was not done$/);
    }
    const s = await sidecar();
    const wrong = createClient({ url: s.url, token: "not-the-token-0123456789" });
    const err = await wrong.resetSession("k").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "SIDECAR_UNREACHABLE", url: s.url });
    expect((err as Error).message).toMatch(
      /give createClient\(\{ token \}\) the sidecar's JUDGE_GUARD_TOKEN/,
    );
  });
});
