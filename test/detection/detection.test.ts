import { describe, expect, it } from "vitest";
import { CannedCatalog, PHANTOM_CANNED_PATTERNS } from "../../src/detection/catalog.js";
import { type Comparison, weigh } from "../../src/detection/evidence.js";
import { type ReplyFacts, SessionTracker } from "../../src/detection/tracker.js";
import { signReply } from "../../src/fingerprint/fingerprint.js";
import { DEFAULT_SIMILARITY } from "../../src/fingerprint/similarity.js";
import { CANNED } from "../helpers/replies.js";

const T = { repeatThreshold: 3, knownRepeatThreshold: 2, minReplyChars: 16 };

describe("weigh", () => {
  const repeat: Comparison = {
    match: "exact",
    known: false,
    sameInput: false,
    sameTopic: false,
    onTopic: false,
    answer: false,
    substanceChars: 40,
    manyNumbers: false,
    numbersChanged: false,
    work: "none",
    blocked: false,
    status: false,
    thanks: false,
    monologue: false,
    related: false,
    long: false,
  };
  const fresh: Comparison = { ...repeat, match: null };
  it.each<[string, Comparison, number | "reset"]>([
    ["a repeat to a different input", repeat, 1],
    ["a near-duplicate", { ...repeat, match: "near" }, 1],
    ["a known canned line reaches the threshold at once", { ...repeat, known: true, work: "paid" }, 2],
    ["the same question again", { ...repeat, sameInput: true }, 0],
    ["too short to tell", { ...repeat, substanceChars: 5 }, 0],
    ["a closer after thanks", { ...repeat, thanks: true }, 0],
    ["a counter changed, no facts", { ...repeat, match: "volatile" }, 1],
    ["a counter changed, an SDK session", { ...repeat, match: "volatile", work: "session" }, 0.5],
    ["data changed in a paid reply: a template", { ...repeat, match: "volatile", work: "paid" }, -0.5],
    [
      "data changed in a paid reply that reads as an error",
      { ...repeat, match: "volatile", work: "paid", blocked: true },
      0.5,
    ],
    ["three or more numbers changed: a report", { ...repeat, match: "volatile", manyNumbers: true }, 0],
    ["the words that changed are the user's", { ...repeat, match: "slot" }, 0],
    ["... in a paid reply", { ...repeat, match: "slot", work: "paid" }, -0.5],
    ["a quote of the user's message set aside", { ...repeat, match: "quote" }, 1],
    ["a free bounce", { ...repeat, work: "bounce" }, 2],
    ["a paid repeat (a refusal loop)", { ...repeat, work: "paid" }, 1],
    ["a new reply", fresh, -1],
    ["a new short reply", { ...fresh, substanceChars: 4 }, 0],
    ["a new paraphrase of the window", { ...fresh, related: true }, 0],
    ["a new long reply is a real answer", { ...fresh, long: true }, "reset"],
    ["a new paid reply is a real answer", { ...fresh, work: "paid" }, "reset"],
    ["a new line that reads as a refusal or a wait: no sign of an answer", { ...fresh, blocked: true }, 0],
    ["a repeat that names what was asked: an answer that repeats", { ...repeat, onTopic: true }, 0.5],
    ["both messages ask about one thing, answered alike", { ...repeat, sameTopic: true }, 0],
    ["the same question answered again as before", { ...repeat, sameInput: true, answer: true }, -1],
    [
      "the agent did the same thing again on its own, a pid aside",
      { ...repeat, match: "volatile", work: "paid", monologue: true },
      1,
    ],
    [
      "... but with many values changed: progress",
      { ...repeat, match: "volatile", work: "paid", monologue: true, manyNumbers: true },
      -0.5,
    ],
    [
      "a near-duplicate in paid work (the next step on another file)",
      { ...repeat, match: "near", work: "paid" },
      0.5,
    ],
    [
      "... whose data changed too: a template filled in",
      { ...repeat, match: "near", work: "paid", numbersChanged: true },
      -0.5,
    ],
    ["a near-duplicate the agent said on its own", { ...repeat, match: "near", monologue: true }, 0.5],
  ])("%s", (_name, c, weight) => {
    expect(weigh(c, T).weight).toBe(weight);
  });

  it("scales the known-line weight to knownRepeatThreshold", () => {
    expect(weigh({ ...repeat, known: true }, { ...T, knownRepeatThreshold: 3 }).weight).toBe(1);
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
    expect(obs[3]!.assessment).toMatchObject({ repeats: 3, evidence: "repeats" });
    expect(obs[3]!.step).toMatchObject({ turn: 4, match: "exact", matchedTurn: 3, score: 2 });
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

  it("catches a paid canned loop (a refusal) at the 3rd reply to different inputs", () => {
    const { t } = tracker([]);
    const reply = "I'm sorry, but I can't help with that request.";
    const paid: ReplyFacts = { costUsd: 0.02, sdkSessionId: "sdk_1" };
    const obs = feed(t, "k", [
      [
        "summarise the incident doc",
        "The incident began at 09:12 when the cache filled; two fixes shipped.",
        paid,
      ],
      ["open the runbook", reply, paid],
      ["list the alerts from last night", reply, paid],
      ["who is on call this week?", reply, paid],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, true]);
  });

  it("never flags a paid status template whose numbers change", () => {
    const { t } = tracker([]);
    const paid: ReplyFacts = { costUsd: 0.03, sdkSessionId: "sdk_2", toolsUsed: ["Bash"] };
    const asks = [
      "backup ok?",
      "how did the backup go",
      "did last night's backup finish?",
      "backup status",
      "and today?",
      "check it again",
    ];
    const obs = feed(
      t,
      "k",
      asks.map((u, i) => [
        u,
        `Backup finished: ${1200 + i * 37 - (i % 2) * 90} files, ${(3 + i * 0.3).toFixed(1)} GB copied.`,
        paid,
      ]),
    );
    expect(obs.some((o) => o.assessment?.stuck)).toBe(false);
  });

  it("never flags the same paid answer to differently worded asks about one thing", () => {
    const { t } = tracker([]);
    const paid: ReplyFacts = { costUsd: 0.03, sdkSessionId: "sdk_3", toolsUsed: ["Bash"] };
    const clean = "Yes — `git status` shows a clean working tree on `main`, up to date with `origin/main`.";
    const obs = feed(t, "k", [
      ["commit everything with a sensible message", "Committed 4f1a9c2 (3 files changed).", paid],
      ["is the tree clean now?", clean, paid],
      ["pull and check again", clean, paid],
      ["I rebased on top of origin/main, still clean?", clean, paid],
      ["and after the merge?", clean, paid],
    ]);
    expect(obs.some((o) => o.assessment?.stuck)).toBe(false);
  });

  it("catches a canned line around a quoted message ('> your message', then 'still busy')", () => {
    const { t } = tracker([]);
    const line = (u: string) =>
      `> ${u}\n\nI received this, but I'm still busy with your previous message. Please wait.`;
    const asks = ["write the invoice email", "what about the SSO question?", "/status", "hello??"];
    const obs = feed(t, "k", [
      ["hi", "Hello! What are we working on today?"],
      ...asks.map((u): [string, string] => [u, line(u)]),
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, true, true]);
  });

  it("reads markdown emphasis as decoration: _line_, **line**, ### line are one line", () => {
    const { t } = tracker([]);
    const obs = feed(t, "k", [
      ["hi", "Hello! What are we working on today?"],
      ["the SSO question", "💳 **Account suspended until the invoice is paid**"],
      ["and the macro?", "_Account suspended until the invoice is paid_"],
      ["hello?", "### ❗ Account suspended until the invoice is paid"],
    ]);
    expect(obs.map((o) => o.step?.match)).toEqual(["new", "new", "exact", "exact"]);
    expect(obs[3]!.assessment?.stuck).toBe(true);
  });

  it("weighs a sentence of Chinese as a sentence: a paid refusal loop is caught by the 3rd reply", () => {
    const { t } = tracker([]);
    const paid: ReplyFacts = { costUsd: 0.006, sdkSessionId: "sdk_4" };
    const refusal = "抱歉，我无法协助处理该请求。";
    const obs = feed(t, "k", [
      [
        "Python 里怎么给列表去重？",
        "最简单的写法是利用 dict 保持插入顺序：list(dict.fromkeys(items))。",
        paid,
      ],
      ["第一次去北京，三天怎么安排？", refusal, paid],
      ["继续说英文邮件开头吧", refusal, paid],
      ["需要我做什么吗？", refusal, paid],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, true]);
  });

  it("catches a random choice among short refusals that share no words", () => {
    const { t } = tracker([]);
    const lines = [
      "I'm afraid I can't do that at the moment.",
      "I'm not able to do that just now.",
      "Unfortunately that's not possible for me right now.",
      "Sorry, I'm not able to help with that right now.",
    ];
    const picks = [0, 1, 1, 3, 2, 2, 0, 3];
    const obs = feed(t, "k", [
      [
        "profile a slow endpoint",
        "Start it with node --cpu-prof, send load, then open the profile in DevTools.",
      ],
      ...picks.map((p, i): [string, string] => [`question number ${i}: something else entirely`, lines[p]!]),
    ]);
    expect(obs.some((o) => o.assessment?.stuck)).toBe(true);
    // Not before a line has recurred.
    expect(obs[2]!.assessment?.stuck).toBe(false);
  });

  it("does not count a known line printed between real steps of work (a context condensation)", () => {
    const condensed = "[Condensed history] Trimming prompt to meet context window limitations.";
    const { t } = tracker([], [signReply(condensed).fingerprint]);
    const paid: ReplyFacts = { costUsd: 0.02, sdkSessionId: "sdk_5", toolsUsed: ["execute_bash"] };
    const obs = feed(t, "k", [
      ["convert every unittest class to pytest", "Counting the files to convert: 12 files.", paid],
      ["", condensed, paid],
      ["", "Converting batch 1: 3 files converted, 16 tests pass.", paid],
      ["", condensed, paid],
      ["", "Converting batch 2: 3 more files converted, 27 tests pass.", paid],
    ]);
    expect(obs.some((o) => o.assessment?.stuck)).toBe(false);
  });

  it("judges the same question answered again as before, and does not call it canned", () => {
    const { t } = tracker();
    const answer = "Use list(dict.fromkeys(items)): it keeps the first occurrence of each item, in order.";
    const obs = feed(t, "k", [
      ["how do I dedupe a list and keep the order?", answer],
      ["/cancel", CANNED],
      ["hello?", CANNED],
      ["still there?", CANNED],
      ["how do I dedupe a list and keep the order?", answer],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, true, true, false]);
  });

  it("counts a short line that reads as a wait ('Working on it…'), though not an acknowledgement", () => {
    const { t } = tracker([]);
    const obs = feed(t, "k", [
      ["hi", "Hello! What are we working on today?"],
      ["fix the flaky test", "Working on it…"],
      ["any news?", "Working on it…"],
      ["hello??", "Working on it…"],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, true]);
  });

  it("does not take a function word of another language for the user's topic ('bist du noch da?')", () => {
    const { t } = tracker([]);
    const line = "Ich bearbeite noch deine vorherige Nachricht. Bitte warte einen Moment.";
    const obs = feed(t, "k", [
      ["Wie lösche ich einen Git-Branch?", "Mit git branch -d NAME, oder -D, wenn er nicht gemergt ist."],
      ["bist du noch da?", line],
      ["Kannst du die Tabelle sortieren?", line],
      ["Hallo?", line],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, true]);
  });

  it("reads '0 failed' in a paid CI report as a count, not an error", () => {
    const { t } = tracker([]);
    const paid: ReplyFacts = { costUsd: 0.01, sdkSessionId: "sdk_6", toolsUsed: ["Bash"] };
    const asks = ["run the tests", "rerun pls", "and now?", "final run before merge", "once more", "again"];
    const obs = feed(
      t,
      "k",
      asks.map((u, i) => [
        u,
        `Build #${4810 + i}: ${200 + i * 3} passed, 0 failed, 3 skipped (3m ${20 + i}s).`,
        paid,
      ]),
    );
    expect(obs.some((o) => o.assessment?.stuck)).toBe(false);
  });

  it("counts a line that recurs within the window, not only in a run: A/B/A/B", () => {
    const { t } = tracker([]);
    const a = "The service is temporarily unavailable. Please try again later.";
    const b = "Your request could not be completed right now; our team has been notified.";
    const obs = feed(t, "k", [
      ["hi", "Hello! What shall we look at today?"],
      ["check the logs", a],
      ["and the metrics?", b],
      ["hello?", a],
      ["anyone there?", b],
      ["this is broken", a],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, false, true, true]);
  });

  it("catches three paraphrases in rotation", () => {
    const { t } = tracker([]);
    const lines = [
      CANNED,
      "Still busy with your last request, please hold on a moment.",
      "Please wait, your earlier message is still being processed.",
    ];
    const asks = ["deploy web", "status?", "hello", "why so slow", "ping", "any news", "come on", "ok?"];
    const obs = feed(t, "k", [
      ["hi", "Hi! Ready when you are."],
      ...asks.map((u, i) => [u, lines[i % 3]!] as [string, string]),
    ]);
    const first = obs.findIndex((o) => o.assessment?.stuck);
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(6);
    expect(obs.slice(first + 1).every((o) => o.assessment?.stuck)).toBe(true);
  });

  it("sets aside a quote of the user's message", () => {
    const { t } = tracker([]);
    const asks = ["how big is the users table?", "can you rotate the api keys", "why did the deploy fail"];
    const obs = feed(t, "k", [
      ["hello", "Hello! What do you need?"],
      ...asks.map(
        (u) =>
          [
            u,
            `I received "${u}" but I'm still processing your previous request. Please try again shortly.`,
          ] as [string, string],
      ),
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, true]);
    expect(obs[3]!.step?.match).toBe("quote");
  });

  it("compares Chinese and Japanese character by character", () => {
    const { t } = tracker([]);
    const obs = feed(t, "k", [
      ["你好", "你好！今天需要我帮你做什么？"],
      ["部署进度怎么样", "系统繁忙，正在处理您之前的消息，请稍候再试（第2次）。"],
      ["还要多久", "系统繁忙，正在处理您之前的消息，请稍候再试（第3次）。"],
      ["快点", "系统繁忙，正在处理您之前的消息，请稍后再试（第4次）。"],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, true]);
  });

  it("judges the first real reply after a recovery, even a short one", () => {
    const { t } = tracker([]);
    const line = "Sorry, I am unable to process requests right now. Try again later.";
    const obs = feed(t, "k", [
      ["a", "Here is the plan for the migration: three steps, each reversible."],
      ["b", line],
      ["c", line],
      ["d", line],
      ["e", line],
      ["f", "Hi again! What can I help with?"],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, false, true, true, false]);
  });

  it("counts an agent repeating itself without a new user message (a monologue)", () => {
    const { t } = tracker([]);
    const line = "I will now check the configuration file for errors and report back.";
    const obs = [1, 2, 3, 4].map((n) =>
      t.observe(
        "k",
        ["check the config please"],
        Array.from({ length: n }, () => line),
        undefined,
      ),
    );
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, true, true]);
  });

  it("catches a known line at its 2nd occurrence even when paid", () => {
    const { t } = tracker();
    const paid: ReplyFacts = { costUsd: 0.01, sdkSessionId: "sdk_3", toolsUsed: ["Read"] };
    const obs = feed(t, "k", [
      ["go", "Working on it: the first draft is in docs/plan.md.", paid],
      ["next", CANNED, paid],
      ["and?", CANNED, paid],
    ]);
    expect(obs.map((o) => o.assessment?.stuck)).toEqual([false, false, true]);
    expect(obs[2]!.assessment?.evidence).toBe("known_canned");
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
    first.catalog.addFingerprint(a[2]!.step!.fingerprint);
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
