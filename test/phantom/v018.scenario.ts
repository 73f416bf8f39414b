// Phantom v0.18.2's real code under Bun, with only the LLM faked (run by test/phantom/v018.test.ts
// as `bun test` in a Phantom work folder; the guard, when on, was installed by the documented
// preload before this file ran). Phantom's own classes run: AgentRuntime (its activeSessions lock
// and stale-resume path), EvolutionEngine.afterSession (six judges, multiJudge), the memory
// consolidation judge, callJudge and setClient. Faked: the Agent SDK's query() (the agent's
// LLM) and the Anthropic client given to setClient (the judges' LLM).
//
// What this file writes itself is the glue of Phantom's src/index.ts message handler (what it
// calls, in order, for each inbound message); the handler is not exported, and starting
// Phantom's whole main() needs Slack, Qdrant and Ollama. The memory store behind consolidation is
// a stand-in (Qdrant is not an LLM); the consolidation judge itself is Phantom's.
//
// Prints one JSON line: what the fake LLM was asked for, per phase and key.
import { mock, test } from "bun:test";
import { join } from "node:path";
import { CANNED } from "../helpers/replies.ts";

const root = process.cwd();
const env = process.env;
const STALE = "sdk-stale-after-recreate";
const STUCK_KEY = "cli:local";

// --- the agent's LLM: Phantom's Agent SDK query() ------------------------------------------
let sdkSeq = 0;
let answers = 0;
const sdkPath = Bun.resolveSync("@anthropic-ai/claude-agent-sdk", root);
const real = await import(sdkPath);
function fakeQuery(params: {
  prompt: string;
  options?: { resume?: string; abortController?: AbortController };
}) {
  const o = params.options ?? {};
  return (async function* () {
    if (o.resume === STALE) {
      // The stale resume of the incident: the SDK never answers; only the abort ends it.
      await new Promise<void>((_, reject) =>
        o.abortController?.signal.addEventListener("abort", () => reject(new Error("aborted"))),
      );
    }
    const id = o.resume ?? `sdk-${++sdkSeq}`;
    yield { type: "system", subtype: "init", session_id: id };
    const text = answer(++answers);
    yield { type: "assistant", message: { content: [{ type: "text", text }] } };
    yield {
      type: "result",
      subtype: "success",
      result: text,
      total_cost_usd: 0.012,
      usage: { input_tokens: 900, output_tokens: 120 },
      modelUsage: {},
    };
  })();
}
/** A real-looking, different answer every time (healthy traffic is not a template). */
const SENTENCES = [
  "The deploy pipeline failed at the migration step because the schema lock was held.",
  "I rolled back the staging release and the health checks are green again.",
  "Your calendar has two overlapping meetings on Thursday afternoon.",
  "The invoice from the hosting provider is higher because of egress traffic.",
  "I drafted a reply to the customer explaining the refund timeline.",
  "The flaky test depends on the system clock; freezing time fixes it.",
  "Memory usage grows because the cache never evicts old sessions.",
  "The new onboarding doc is in the shared folder under engineering.",
  "Latency spikes line up with the nightly backup window.",
  "I opened a pull request that pins the vulnerable dependency.",
  "The quarterly numbers show churn falling for the third month.",
  "Two alerts were duplicates; I merged them into one incident.",
  "The API returns 429 when more than fifty requests arrive per second.",
  "I summarised the meeting notes and listed the three action items.",
  "The certificate expires in nine days; renewal is scheduled.",
  "Search results improve when the synonyms file includes product names.",
  "The queue drained after the worker count was raised to eight.",
  "The marketing site loads faster since images are served as WebP.",
  "Access for the contractor was revoked as requested.",
  "The budget spreadsheet now totals each department separately.",
];
const ACTIONS = [
  "review the schema",
  "rotate the keys",
  "archive old tickets",
  "rerun the benchmarks",
  "email the vendor",
  "update the runbook",
  "tag the release",
  "trim the backlog",
  "audit permissions",
  "resize the cluster",
  "refresh the dashboards",
  "translate the docs",
  "book the venue",
  "renew the domain",
  "clean the bucket",
  "profile the importer",
  "patch the kernel",
  "sketch the roadmap",
  "call the landlord",
  "merge the forks",
];
const TEAMS = [
  "payments",
  "design",
  "platform",
  "support",
  "legal",
  "growth",
  "mobile",
  "security",
  "finance",
  "research",
  "sales",
  "data",
  "infra",
  "hiring",
  "billing",
  "search",
  "ops",
  "content",
  "partners",
  "quality",
];
const METRICS = [
  "signup conversion",
  "page weight",
  "error budget",
  "queue depth",
  "ticket backlog",
  "cloud spend",
  "crash rate",
  "build time",
  "response latency",
  "open incidents",
  "churn",
  "disk usage",
  "cache hit ratio",
  "deploy frequency",
  "test coverage",
  "refund volume",
  "search recall",
  "login failures",
  "email bounces",
  "trial starts",
];
const MOODS = [
  "healthier",
  "worse",
  "flat",
  "noisy",
  "promising",
  "alarming",
  "stable",
  "erratic",
  "improved",
  "lopsided",
  "seasonal",
  "recovering",
  "slipping",
  "steady",
  "volatile",
  "encouraging",
  "sluggish",
  "solid",
  "uneven",
  "surprising",
];
/** Every answer differs from every other of its key in all three sentences. */
function answer(n: number): string {
  const j = (k: number) => (n * k) % 20;
  return `${SENTENCES[j(1)]} Next I will ${ACTIONS[j(3)]} for the ${TEAMS[j(7)]} team. The ${METRICS[j(9)]} looks ${MOODS[j(11)]} this week.`;
}
mock.module(sdkPath, () => ({ ...real, query: fakeQuery }));

// --- the judges' LLM: the client Phantom's setClient takes ----------------------------------
interface Call {
  phase: string;
  /** The turn being judged got the canned line (or a released request's notice). */
  canned: boolean;
  key: string;
  kind: string;
  input: number;
  output: number;
  usd: number;
}
const calls: Call[] = [];
let phase = "healthy";
let currentKey = "";
let currentCanned = false;
const isCanned = (text: string) => text === CANNED || text.startsWith("Error: judge-guard released");
// The fake LLM tells judges apart on its own, not with judge-guard's phantomJudgeKind: the
// counts it reports are what the guard is checked against.
const PROPS: Array<[string, string]> = [
  ["observations", "observation_extraction"],
  ["extracted_facts", "consolidation"],
  ["violated_principles", "constitution_gate"],
  ["flags", "safety_gate"],
  ["case_id", "regression_gate"],
  ["goal_accomplished", "quality_assessment"],
];
function kindOf(p: { output_config?: { format?: { schema?: { properties?: object } } } }): string {
  const props = p.output_config?.format?.schema?.properties ?? {};
  return PROPS.find(([k]) => k in props)?.[1] ?? "unknown";
}
function parsedFor(kind: string): unknown {
  switch (kind) {
    case "observation_extraction":
      return {
        session_outcome: "success",
        observations: [
          {
            type: "explicit_correction",
            importance: 0.9,
            summary: `The user wants shorter answers (turn ${calls.length})`,
            detail: "asked for brevity",
            evidence: "asked twice",
            affected_config_files: ["user-profile.md"],
          },
        ],
        implicit_signals: {
          user_satisfaction: 0.4,
          user_satisfaction_evidence: "terse",
          agent_performance: 0.5,
          agent_performance_evidence: "ok",
        },
        meta: { total_user_messages: 1, total_corrections: 1, tools_used: [], primary_task_type: "chat" },
      };
    case "consolidation":
      return {
        reasoning: "r",
        extracted_facts: [],
        detected_procedures: [],
        episode_importance: 0.5,
        contradictions: [],
      };
    case "constitution_gate":
      return { reasoning: "fine", violated_principles: [], verdict: "pass", confidence: 0.9 };
    case "safety_gate":
      return { overall_reasoning: "fine", flags: [], verdict: "pass", confidence: 0.9, recommendation: "ok" };
    case "regression_gate":
      return { case_id: "c", reasoning: "fine", verdict: "pass", confidence: 0.9 };
    default:
      return {
        overall_reasoning: "r",
        goal_accomplished: { verdict: "partially", evidence: "e" },
        overall_score: 0.05,
        regression_signal: false,
        dimensions: [],
      };
  }
}
const fakeAnthropic = {
  messages: {
    async parse(p: { model: string; system?: string; messages?: Array<{ content: string }> }) {
      const kind = kindOf(p as never);
      const chars =
        (p.system?.length ?? 0) + (p.messages ?? []).reduce((n, m) => n + String(m.content).length, 0);
      const input = Math.ceil(chars / 4);
      const output = 400;
      const [pin, pout] = p.model.includes("haiku") ? [1, 5] : p.model.includes("opus") ? [5, 25] : [3, 15];
      calls.push({
        phase,
        canned: currentCanned,
        key: currentKey,
        kind,
        input,
        output,
        usd: (input * pin + output * pout) / 1e6,
      });
      return {
        id: `msg_${calls.length}`,
        model: p.model,
        stop_reason: "end_turn",
        parsed_output: parsedFor(kind),
        content: [],
        usage: { input_tokens: input, output_tokens: output },
      };
    },
    async create() {
      throw new Error("not used by v0.18.2 judges");
    },
  },
};

test("v0.18.2 incident", async () => {
  env.ANTHROPIC_API_KEY ??= "sk-test-not-used";
  const { setClient } = await import(join(root, "src/evolution/judges/client.ts"));
  // The guard wraps the client Phantom is given, as the README says for a client of your own.
  const handle = (
    globalThis as Record<symbol, { wrapJudgeClient<C>(c: C): C; recoveries: unknown[] } | undefined>
  )[Symbol.for("judge-guard.phantom.install")];
  setClient(handle ? handle.wrapJudgeClient(fakeAnthropic) : fakeAnthropic);

  const { loadConfig } = await import(join(root, "src/config/loader.ts"));
  const { getDatabase } = await import(join(root, "src/db/connection.ts"));
  const { runMigrations } = await import(join(root, "src/db/migrate.ts"));
  const { AgentRuntime } = await import(join(root, "src/agent/runtime.ts"));
  const { EvolutionEngine } = await import(join(root, "src/evolution/engine.ts"));
  const { consolidateSessionWithLLM } = await import(join(root, "src/memory/consolidation.ts"));

  const config = loadConfig();
  const db = getDatabase();
  runMigrations(db);
  const evolution = new EvolutionEngine();
  const runtime = new AgentRuntime(config, db);
  runtime.setEvolvedConfig(evolution.getConfig());
  const memory = { storeEpisode: async () => {}, storeFact: async () => {}, isReady: () => true };

  const conversations = new Map<string, { user: string[]; assistant: string[] }>();
  const replies: Array<{ key: string; n: number; text: string; phase: string }> = [];
  const pending = new Set<Promise<unknown>>();

  // src/index.ts's router handler, step by step.
  async function onMessage(channelId: string, conversationId: string, text: string): Promise<string> {
    const convKey = `${channelId}:${conversationId}`;
    const startedAt = new Date().toISOString();
    const existing = conversations.get(convKey) ?? { user: [], assistant: [] };
    existing.user.push(text);
    conversations.set(convKey, existing);
    const response = await runtime.handleMessage(channelId, conversationId, text);
    if (response.text) existing.assistant.push(response.text);
    currentKey = convKey;
    currentCanned = isCanned(response.text);
    replies.push({ key: convKey, n: existing.user.length, text: response.text, phase });
    const outcome = response.text.startsWith("Error:") ? "failure" : "success";
    const work: Promise<unknown>[] = [];
    if (evolution.usesLLMJudges() && evolution.isWithinCostCap()) {
      const cfg = evolution.getConfig();
      const sessionData = {
        sessionId: response.sessionId,
        sessionKey: convKey,
        userId: "u1",
        userMessages: existing.user,
        assistantMessages: existing.assistant,
        toolsUsed: [],
        filesTracked: runtime.getLastTrackedFiles(),
        startedAt,
        endedAt: new Date().toISOString(),
        costUsd: response.cost.totalUsd,
        outcome,
      };
      work.push(
        consolidateSessionWithLLM(memory, sessionData, `${cfg.userProfile}\n${cfg.domainKnowledge}`)
          .then(({ judgeCost }: { judgeCost: { totalUsd: number } | null }) => {
            if (judgeCost) evolution.trackExternalJudgeCost(judgeCost);
          })
          .catch(() => {}),
      );
    }
    work.push(
      evolution
        .afterSession({
          session_id: response.sessionId,
          session_key: convKey,
          user_id: "u1",
          user_messages: existing.user,
          assistant_messages: existing.assistant,
          tools_used: [],
          files_tracked: runtime.getLastTrackedFiles(),
          outcome,
          cost_usd: response.cost.totalUsd,
          started_at: startedAt,
          ended_at: new Date().toISOString(),
        })
        .then((r: { changes_applied: unknown[] }) => {
          if (r.changes_applied.length > 0) runtime.setEvolvedConfig(evolution.getConfig());
        })
        .catch(() => {}),
    );
    await Promise.all(work);
    return response.text;
  }
  /** One message, its judges awaited, attributed to its key. */
  async function say(channel: string, conv: string, text: string): Promise<string> {
    currentKey = `${channel}:${conv}`;
    return onMessage(channel, conv, text);
  }

  const HEALTHY: Array<[string, string]> = [
    ["slack", "C07OPS:1795170600.204"],
    ["telegram", "5512:main"],
  ];
  for (let i = 0; i < 4; i++) {
    for (const [ch, conv] of HEALTHY)
      await say(ch, conv, `healthy question ${i} about deploy ${ch} step ${i * 3}`);
    await say("cli", "local", `please summarise the build log number ${i}`);
  }
  // The container is recreated: the key's row keeps an SDK session id whose file is gone.
  db.run("UPDATE sessions SET sdk_session_id = ? WHERE session_key = ?", [STALE, STUCK_KEY]);
  phase = "stuck";
  currentKey = STUCK_KEY;
  // The first message after the recreate resumes the stale session and hangs, holding the lock.
  const hung = onMessage("cli", "local", "are you there? the deploy failed");
  pending.add(hung);
  await Bun.sleep(20);
  const STUCK_MESSAGES = Number(env.STUCK_MESSAGES ?? 12);
  let recoveredAt: number | null = null;
  for (let i = 0; i < STUCK_MESSAGES; i++) {
    const text = await say("cli", "local", `stuck-phase message ${i}: what is the status of job ${100 + i}?`);
    if (!isCanned(text) && !text.startsWith("Error:")) {
      recoveredAt = i;
      break;
    }
  }
  phase = "after";
  for (let i = 0; i < 2; i++) {
    await say("cli", "local", `after recovery, question ${i} about the release notes`);
    for (const [ch, conv] of HEALTHY) await say(ch, conv, `more healthy work ${i} on ${ch}`);
  }
  const released = await Promise.race([hung.then(() => true), Bun.sleep(50).then(() => false)]);

  const sum = (f: (c: Call) => boolean) => {
    const xs = calls.filter(f);
    return {
      calls: xs.length,
      input_tokens: xs.reduce((n, c) => n + c.input, 0),
      output_tokens: xs.reduce((n, c) => n + c.output, 0),
      usd: Number(xs.reduce((n, c) => n + c.usd, 0).toFixed(6)),
    };
  };
  const kinds: Record<string, number> = {};
  for (const c of calls) kinds[c.kind] = (kinds[c.kind] ?? 0) + 1;
  const cannedReplies = replies.filter((r) => r.key === STUCK_KEY && r.text === CANNED).length;
  const firstCanned = replies.findIndex((r) => r.key === STUCK_KEY && r.text === CANNED);
  const firstAnswerAfter = replies.findIndex(
    (r, i) => i > firstCanned && r.key === STUCK_KEY && !isCanned(r.text) && !r.text.startsWith("Error:"),
  );
  console.log(
    JSON.stringify({
      guarded: handle !== undefined,
      recovered_at: recoveredAt,
      hung_request_released: released,
      canned_replies: cannedReplies,
      /** Canned replies the stuck key got before its first real answer again (null: never). */
      canned_before_recovery:
        firstAnswerAfter < 0
          ? null
          : replies
              .slice(firstCanned, firstAnswerAfter)
              .filter((r) => r.key === STUCK_KEY && r.text === CANNED).length,
      replies_of_stuck_key: replies
        .filter((r) => r.key === STUCK_KEY)
        .map((r) => (isCanned(r.text) ? "canned" : r.text.startsWith("Error:") ? "error" : "answer")),
      recoveries: handle?.recoveries ?? [],
      kinds,
      total: sum(() => true),
      stuck_key_stuck_phase: sum((c) => c.key === STUCK_KEY && c.phase === "stuck"),
      canned_turns: sum((c) => c.key === STUCK_KEY && c.canned),
      stuck_key_total: sum((c) => c.key === STUCK_KEY),
      healthy: sum((c) => c.key !== STUCK_KEY),
      after: sum((c) => c.key === STUCK_KEY && c.phase === "after"),
      max_call_usd: Math.max(0, ...calls.map((c) => c.usd)),
      per_key: Object.fromEntries(
        [...new Set(calls.map((c) => c.key))].map((k) => [k, sum((c) => c.key === k)]),
      ),
    }),
  );
  // The hung SDK call of an unguarded run never ends by itself: stop here.
  process.exit(0);
}, 60_000);
