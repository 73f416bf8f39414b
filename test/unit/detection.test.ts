import { describe, expect, it } from "vitest";
import { assessRun, type RunFacts } from "../../src/detection/assess.js";
import { CannedCatalog, PHANTOM_CANNED_PATTERNS } from "../../src/detection/catalog.js";
import { type ReplyFacts, SessionTracker } from "../../src/detection/tracker.js";
import { DEFAULT_SIMILARITY } from "../../src/fingerprint/similarity.js";

const T = { repeatThreshold: 3, knownRepeatThreshold: 2, minReplyChars: 16 };

describe("assessRun", () => {
  const base: RunFacts = {
    length: 3,
    distinctInputs: 3,
    substanceChars: 40,
    known: false,
    zeroCostReplies: 0,
    paidReplies: 0,
  };
  it.each<[string, Partial<RunFacts>, boolean, number]>([
    ["3 repeats to different inputs", {}, true, 3],
    ["2 repeats are not enough without evidence", { length: 2 }, false, 3],
    ["a known canned line needs 2", { length: 2, known: true }, true, 2],
    ["two free, session-less replies need 2", { length: 2, zeroCostReplies: 2 }, true, 2],
    ["the same question asked again", { distinctInputs: 1, length: 5 }, false, Infinity],
    ["short acknowledgements", { substanceChars: 4, length: 6 }, false, Infinity],
    ["short but known canned", { substanceChars: 8, length: 2, known: true }, true, 2],
    ["paid replies need two more", { paidReplies: 3, length: 4 }, false, 5],
    ["paid replies, long run", { paidReplies: 5, length: 5 }, true, 5],
    [
      "known but paid for by the model: not a runtime bounce",
      { known: true, paidReplies: 1, length: 3 },
      false,
      5,
    ],
  ])("%s", (_name, facts, stuck, required) => {
    const a = assessRun({ ...base, ...facts }, T);
    expect(a.stuck).toBe(stuck);
    expect(a.required).toBe(required);
  });
});

function tracker(patterns = PHANTOM_CANNED_PATTERNS, fingerprints: string[] = []) {
  const catalog = new CannedCatalog(patterns, fingerprints);
  return {
    catalog,
    t: new SessionTracker({ ...T, similarity: DEFAULT_SIMILARITY, maxSessions: 100 }, catalog),
  };
}

/** Feeds a conversation turn by turn, as Phantom does (whole transcript every time). */
function feed(
  t: SessionTracker,
  key: string,
  turns: Array<[string, string, ReplyFacts?]>,
): Array<ReturnType<SessionTracker["observe"]>> {
  const users: string[] = [];
  const replies: string[] = [];
  return turns.map(([u, a, facts]) => {
    users.push(u);
    replies.push(a);
    return t.observe(key, [...users], [...replies], facts);
  });
}

const CANNED = "I'm still working on your previous message. Please wait.";

describe("SessionTracker", () => {
  it("flags a session at the 3rd repeat of an unknown canned line", () => {
    const { t } = tracker([]);
    const line = "Sorry, I am unable to process requests right now. Try again later.";
    const obs = feed(t, "k", [
      ["deploy the api", "Deployed version 4 to staging; smoke tests pass."],
      ["now prod", line],
      ["hello?", line],
      ["are you there", line],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, true]);
    expect(obs[3]!.run).toMatchObject({ length: 3, startTurn: 1 });
  });

  it("recognises Phantom's canned line at the 2nd repeat", () => {
    const { t } = tracker();
    const obs = feed(t, "k", [
      ["hi", "Hello! What are we working on?"],
      ["fix the tests", CANNED],
      ["hello?", CANNED],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, true]);
  });

  it("does not flag repeated short acknowledgements", () => {
    const { t } = tracker([]);
    const obs = feed(t, "k", [
      ["rename foo to bar", "Done."],
      ["commit it", "Done."],
      ["push", "Done."],
      ["tag v1", "Done."],
      ["open a PR", "Done."],
    ]);
    expect(obs.some((o) => o.assessment?.stuck)).toBe(false);
  });

  it("does not flag the same answer to the same question", () => {
    const { t } = tracker([]);
    const answer = "The staging database is at db-staging.internal:5432, user app_ro.";
    const obs = feed(t, "k", [
      ["where is the staging db?", answer],
      ["where is the staging db?", answer],
      ["where is the staging db?", answer],
    ]);
    expect(obs.some((o) => o.assessment?.stuck)).toBe(false);
  });

  it("does not flag replies that share only a footer", () => {
    const { t } = tracker([]);
    const footer = "\n\n--\nPhantom, your AI co-worker. Replies may be inaccurate; verify before acting.";
    const obs = feed(t, "k", [
      ["status?", `All green.${footer}`],
      ["and the queue?", `Queue depth is 12.${footer}`],
      ["errors?", `No errors.${footer}`],
      ["latency?", `p99 is fine.${footer}`],
    ]);
    expect(obs.some((o) => o.assessment?.stuck)).toBe(false);
  });

  it("uses reply facts: free, session-less bounces are a strong sign", () => {
    const { t } = tracker([]);
    const bounce = "Hang on, another task is running for you right now.";
    const zero: ReplyFacts = { costUsd: 0, sdkSessionId: "" };
    const obs = feed(t, "k", [
      ["a", bounce, zero],
      ["b", bounce, zero],
    ]);
    expect(obs[1]!.assessment).toMatchObject({ stuck: true, evidence: "zero_cost" });
  });

  it("uses reply facts: paid replies need more repeats", () => {
    const { t } = tracker([]);
    const reply = "I could not find that file in the repository; check the path and try again.";
    const paid: ReplyFacts = { costUsd: 0.02, sdkSessionId: "sdk_1" };
    const obs = feed(t, "k", [
      ["open a.ts", reply, paid],
      ["open b.ts", reply, paid],
      ["open c.ts", reply, paid],
      ["open d.ts", reply, paid],
      ["open e.ts", reply, paid],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, false, true]);
  });

  it("re-arms when a different reply arrives", () => {
    const { t } = tracker();
    const obs = feed(t, "k", [
      ["a", CANNED],
      ["b", CANNED],
      ["c", "Sorry about that, I'm back. The build is fixed."],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, true, false]);
  });

  it("recognises a registered fingerprint from another session sooner", () => {
    const line = "The assistant is temporarily unavailable due to maintenance.";
    const first = tracker([]);
    const a = feed(first.t, "a", [
      ["x", line],
      ["y", line],
      ["z", line],
    ]);
    expect(a[2]!.assessment?.stuck).toBe(true);
    first.catalog.addFingerprint(a[2]!.run!.fingerprint);
    const b = feed(first.t, "b", [
      ["p", line],
      ["q", line],
    ]);
    expect(b[1]!.assessment).toMatchObject({ stuck: true, evidence: "known_canned" });
  });

  it("processes only what is new, and starts over when the transcript is rewritten", () => {
    const { t } = tracker([]);
    const first = t.observe("k", ["u1", "u2"], ["r1", "r2"], undefined);
    expect(first).toMatchObject({ newReplies: 2, rebuilt: true, turns: 2 });
    const again = t.observe("k", ["u1", "u2"], ["r1", "r2"], undefined);
    expect(again).toMatchObject({ newReplies: 0, rebuilt: false, transcriptHash: first.transcriptHash });
    const grown = t.observe("k", ["u1", "u2", "u3"], ["r1", "r2", "r3"], undefined);
    expect(grown).toMatchObject({ newReplies: 1, rebuilt: false, turns: 3 });
    expect(grown.transcriptHash).not.toBe(first.transcriptHash);
    const rewritten = t.observe("k", ["other"], ["reply"], undefined);
    expect(rewritten).toMatchObject({ rebuilt: true, turns: 1 });
  });

  it("does not flag short templated replies that echo what each user asked", () => {
    const { t } = tracker([]);
    const obs = feed(t, "k", [
      ["deploy api to staging", "Deployed service api to staging successfully."],
      ["now deploy web", "Deployed service web to staging successfully."],
      ["and the worker", "Deployed service worker to staging successfully."],
      ["also billing please", "Deployed service billing to staging successfully."],
      ["finally search", "Deployed service search to staging successfully."],
    ]);
    expect(obs.some((o) => o.assessment?.stuck)).toBe(false);
  });

  it("answers a late, shorter transcript from memory instead of starting over", () => {
    const { t } = tracker([]);
    const users = Array.from({ length: 30 }, (_, i) => `question number ${i} about the deploy`);
    const replies = Array.from(
      { length: 30 },
      (_, i) => `Answer ${i}: ${"the pipeline is fine ".repeat(1 + (i % 3))}`,
    );
    let rebuilt = 0;
    for (let i = 1; i <= 30; i++) {
      const now = t.observe("k", users.slice(0, i), replies.slice(0, i), undefined);
      if (now.rebuilt) rebuilt++;
      if (i > 2) {
        // The second judge of the previous turn arrives after this turn's first.
        const late = t.observe("k", users.slice(0, i - 1), replies.slice(0, i - 1), undefined);
        expect(late).toMatchObject({ stale: true, rebuilt: false, turns: i - 1 });
      }
    }
    expect(rebuilt).toBe(1);
  });

  it("rejects a non-string message with its index", () => {
    const { t } = tracker([]);
    expect(() => t.observe("k", ["a", 3 as unknown as string], ["x"], undefined)).toThrow(
      /userMessages\[1\]/,
    );
  });
});
