import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createGuard, type GuardEvent, MemoryStore, SqliteStore } from "../../src/index.js";
import { CANNED } from "../helpers/replies.js";
import { sessionRequest } from "../helpers/requests.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const request = (key: string, users: string[], replies: string[], judge = "quality_assessment") =>
  sessionRequest(key, users, replies, judge);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("calls in flight", () => {
  it("a judge never seen before does not hold up other calls on a fresh ledger", async () => {
    const guard = createGuard({ ledger: join(tmp(), "ledger.db"), logger: "silent", admissionWaitMs: 200 });
    const judge = async () => {
      await sleep(400); // longer than the admission wait
      return { inputTokens: 1500, outputTokens: 400 };
    };
    const outs = await Promise.all(
      ["a", "b", "c"].map((k) => guard.run(request(k, ["q"], ["a real answer"]), judge)),
    );
    expect(outs.map((o) => o.status)).toEqual(["judged", "judged", "judged"]);
    await guard.close();
  });

  it("when a shared identical call fails, one waiter retries and the others share its verdict", async () => {
    const guard = createGuard({ ledger: new MemoryStore(), logger: "silent" });
    let calls = 0;
    const judge = async () => {
      calls++;
      await sleep(10);
      if (calls === 1) throw new Error("judge timed out");
      return { inputTokens: 100, outputTokens: 10 };
    };
    const req = request("k", ["q"], ["a real answer"]);
    const outs = await Promise.allSettled(
      Array.from({ length: 5 }, () => guard.run(req, judge, { share: true })),
    );
    expect(calls).toBe(2);
    expect(outs.filter((o) => o.status === "rejected")).toHaveLength(1);
    const ok = outs.flatMap((o) => (o.status === "fulfilled" ? [o.value.status] : []));
    expect(ok.sort()).toEqual(["judged", "reused", "reused", "reused"]);
    await guard.close();
  });

  it("two guards sharing a ledger open one episode and send one signal", async () => {
    const ledger = join(tmp(), "ledger.db");
    const events: GuardEvent[] = [];
    const sink = { name: "cb", send: (e: GuardEvent) => void events.push(e) };
    const a = createGuard({ ledger, logger: "silent", signals: [sink] });
    const b = createGuard({ ledger, logger: "silent", signals: [sink] });
    const users = ["hi", "status?", "hello?"];
    const replies = ["Hello! Deploying now.", CANNED, CANNED];
    const judge = async () => ({ inputTokens: 10, outputTokens: 10 });
    for (let i = 1; i <= 3; i++) {
      await a.run(request("cli", users.slice(0, i), replies.slice(0, i), "observation_extraction"), judge);
      await b.run(request("cli", users.slice(0, i), replies.slice(0, i), "consolidation"), judge);
    }
    await a.close();
    await b.close();
    const store = new SqliteStore(ledger, { backgroundCheckpoints: false });
    expect(store.episodes()).toHaveLength(1);
    store.close();
    expect(events).toHaveLength(1);
  });
});

describe("requests that arrive out of order", () => {
  it("a late request for an earlier turn is answered from memory and does not end the episode", async () => {
    const guard = createGuard({ ledger: new MemoryStore(), logger: "silent" });
    const users = ["deploy", "a", "b", "c"];
    const replies = ["Deployed to staging, all green.", CANNED, CANNED, CANNED];
    const judge = async () => ({ inputTokens: 10, outputTokens: 10 });
    for (let i = 1; i <= 4; i++)
      await guard.run(request("cli", users.slice(0, i), replies.slice(0, i)), judge);
    expect(guard.session("cli").stuck).toBe(true);
    const episode = guard.session("cli").episodeId;
    // The consolidation judge for turn 1 (healthy then) arrives last.
    const late = await guard.run(
      request("cli", users.slice(0, 1), replies.slice(0, 1), "consolidation"),
      judge,
    );
    expect(late.status).toBe("judged");
    expect(guard.session("cli")).toMatchObject({ stuck: true, episodeId: episode });
    // And the next, longer request continues where the key was, without starting over.
    const next = await guard.run(request("cli", [...users, "d"], [...replies, CANNED]), judge);
    expect(next.status).toBe("skipped");
    await guard.close();
  });
});
