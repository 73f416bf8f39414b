// Run by Bun (cwd = a phantomWorkdir): Phantom main's real runtime, engine, queue, cadence, gate
// and reflection, with only the Agent SDK's query() faked through Phantom's own test hook. When
// the guard is wanted, Bun preloads judge-guard (BUN_OPTIONS="--preload .../phantom-preload.js"),
// exactly as an operator installs it; this script does not know whether it is guarded.
//
// The last stdout line is a JSON object: every LLM call the fake saw, and every reply per key.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { CANNED_MAIN } from "../helpers/replies.ts";

const WORK = process.cwd();
const mod = (p: string) => import(pathToFileURL(join(WORK, p)).href);

const { __setAgentSdkQueryForTests } = await mod("src/agent/agent-sdk.ts");
const { AgentRuntime } = await mod("src/agent/runtime.ts");
const { EvolutionEngine } = await mod("src/evolution/engine.ts");
const { EvolutionQueue } = await mod("src/evolution/queue.ts");
const { EvolutionCadence, loadCadenceConfig } = await mod("src/evolution/cadence.ts");
const { loadConfig } = await mod("src/config/loader.ts");
const { getDatabase } = await mod("src/db/connection.ts");
const { runMigrations } = await mod("src/db/migrate.ts");

const HEALTHY_TURNS = Number(process.env.SCENARIO_HEALTHY_TURNS ?? 3);
const STUCK_MESSAGES = Number(process.env.SCENARIO_STUCK_MESSAGES ?? 13);
const EXTRA_ROUNDS = Number(process.env.SCENARIO_EXTRA_ROUNDS ?? 2);

// Haiku prices, USD per 1M tokens (input, output, cache read).
const HAIKU = { input: 1, output: 5, cacheRead: 0.1 };
const usd = (inT: number, outT: number, cacheRead = 0) =>
  (inT * HAIKU.input + outT * HAIKU.output + cacheRead * HAIKU.cacheRead) / 1e6;

interface Call {
  kind: "agent" | "gate" | "reflection";
  /** Per key involved: its tokens and USD (a reflection's rows each have theirs). */
  /** stuckTurn: the judged turn's latest reply is canned (or released); stuckReplies: how many its transcript has. */
  shares: Array<{
    key: string;
    stuckTurn: boolean;
    stuckReplies: number;
    inputTokens: number;
    outputTokens: number;
    usd: number;
  }>;
  usd: number;
  seq: number;
}
const calls: Call[] = [];
let seq = 0;
const firstUserToKey = new Map<string, string>();
const isStuckReply = (s: string | undefined) =>
  s === CANNED_MAIN || (s ?? "").startsWith("Error: judge-guard released");

const stale = new Set<string>();
const hung: string[] = [];
let sdkSessions = 0;

const REPLIES = [
  "I checked the deploy logs: the 502s started when the health probe moved to port 8081. I updated the probe path and the rollout is green again.",
  "The flaky test was racing the temp directory cleanup. I gave each worker its own folder; twenty runs in a row pass now.",
  "Your Postgres connection pool is capped at 10 while the API runs 16 workers. Raising it to 32 removes the timeouts you saw at noon.",
  "I drafted the migration guide: three sections (breaking changes, new config keys, rollback steps) and linked it from the README.",
  "The nightly report failed because the S3 bucket policy denies ListObjectsV2. I opened a ticket for infra with the exact policy diff.",
  "Renamed the feature flag to checkout_v2_enabled across the six services and removed the dead code path behind the old name.",
  "Benchmarks after the change: p50 latency dropped from 180 ms to 95 ms, p99 from 1.4 s to 420 ms, memory unchanged.",
  "I reviewed the pull request. Two issues: the retry loop never backs off, and the error message leaks the internal hostname.",
  "Calendar is set: design review Thursday 14:00 with Maya and Tom, agenda attached, room booked on the third floor.",
  "The CSV import choked on Windows line endings in row 4,812. I normalised them and the full file loads in 3 seconds.",
  "Cron for the cleanup job now runs at 03:15 UTC instead of midnight, away from the backup window you mentioned.",
  "I summarised yesterday's incident channel: root cause was an expired TLS certificate on the internal gateway, renewed at 09:40.",
  "Here is the SQL for monthly active users by plan, with the trial accounts filtered out as you asked last week.",
  "Docker image shrank from 1.2 GB to 310 MB by switching to a slim base and moving build tools into a separate stage.",
  "The webhook signature check was comparing strings with ==; I switched it to a constant-time compare and added a test.",
  "Translated the onboarding email into Spanish and German; both versions keep the same links and the unsubscribe footer.",
  "Grafana now has a panel for queue depth per tenant, with an alert at 500 pending jobs for more than five minutes.",
  "I traced the memory leak to an event listener added on every request in the metrics middleware and removed it.",
  "Budget sheet updated: cloud spend is 7 percent under forecast for the quarter, mostly from the reserved instances.",
  "The API docs now show the pagination cursor format and an example of resuming a listing after a timeout.",
  "Lint errors are down to zero: most were unused imports after the refactor, and one real bug in the date parser.",
  "I compared the three vendors: the second one is cheapest at our volume but lacks SSO, which you said is required.",
];

function agentTurn(o: Record<string, unknown>, prompt: string) {
  return (async function* () {
    const resume = o.resume as string | undefined;
    const abort = (o.abortController as AbortController | undefined)?.signal;
    if (resume !== undefined && stale.has(resume)) {
      // The stale SDK session (its container was recreated): the resume never answers.
      hung.push(resume);
      await new Promise<void>((_, reject) => {
        if (abort?.aborted) reject(new Error("aborted"));
        abort?.addEventListener("abort", () => reject(new Error("Operation aborted")), { once: true });
      });
      return;
    }
    const sessionId = resume ?? `sdk-${++sdkSessions}-${Math.random().toString(36).slice(2, 8)}`;
    const m = /\(([a-z]+) #(\d+)\)/.exec(prompt);
    const turn = m ? Number(m[2]) : 0;
    const keyIx = m ? m[1]!.length : 0;
    const text = REPLIES[(turn * 5 + keyIx * 3) % REPLIES.length]!;
    const inputTokens = 2400 + 40 * turn;
    const outputTokens = 180 + 3 * turn;
    const cost = usd(inputTokens, outputTokens) * 15; // the agent runs on Opus
    calls.push({ kind: "agent", shares: [], usd: cost, seq: seq++ });
    yield { type: "system", subtype: "init", session_id: sessionId, tools: [], mcp_servers: [], plugins: [] };
    yield {
      type: "assistant",
      session_id: sessionId,
      message: {
        content: [{ type: "text", text }],
        usage: { input_tokens: inputTokens, output_tokens: outputTokens },
      },
    };
    yield {
      type: "result",
      subtype: "success",
      session_id: sessionId,
      result: text,
      total_cost_usd: cost,
      usage: { input_tokens: inputTokens, output_tokens: outputTokens },
      modelUsage: {
        "claude-opus-4-7": {
          inputTokens,
          outputTokens,
          cacheReadInputTokens: 0,
          cacheCreationInputTokens: 0,
          costUSD: cost,
        },
      },
    };
  })();
}

function gateTurn(o: Record<string, unknown>, prompt: string) {
  return (async function* () {
    const first = /First user message:\n([\s\S]*?)\n\nLast user message:/.exec(prompt)?.[1] ?? "";
    const lastAgent = /Last agent reply:\n([\s\S]*?)\n\nDecide:/.exec(prompt)?.[1];
    const key = firstUserToKey.get(first) ?? "?";
    const system = typeof o.systemPrompt === "string" ? o.systemPrompt : "";
    const inputTokens = Math.ceil((system.length + prompt.length) / 4);
    const outputTokens = 45;
    const cost = usd(inputTokens, outputTokens);
    calls.push({
      kind: "gate",
      shares: [
        {
          key,
          stuckTurn: isStuckReply(lastAgent),
          // The gate prompt counts the transcript's replies containing "Error:" (every canned one).
          stuckReplies: Number(/tool_errors: (\d+)/.exec(prompt)?.[1] ?? 0),
          inputTokens,
          outputTokens,
          usd: cost,
        },
      ],
      usd: cost,
      seq: seq++,
    });
    const text = JSON.stringify({
      evolve: true,
      reason: "The outcome is failure or a new fact: worth reflecting on.",
    });
    yield {
      type: "assistant",
      message: {
        content: [{ type: "text", text }],
        usage: { input_tokens: inputTokens, output_tokens: outputTokens },
      },
    };
    yield {
      type: "result",
      subtype: "success",
      result: text,
      total_cost_usd: cost,
      usage: { input_tokens: inputTokens, output_tokens: outputTokens },
    };
  })();
}

function reflectionTurn(o: Record<string, unknown>, prompt: string) {
  return (async function* () {
    const file = /\.\/(\.staging\/[^\s]+\.jsonl)/.exec(prompt)?.[1];
    const rows = readFileSync(join(String(o.cwd), file ?? ""), "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map(
        (l) =>
          JSON.parse(l) as { session_key: string; user_messages: string[]; assistant_messages: string[] },
      );
    // The reflection reads every row of the batch: its cost grows with the batch and each row's transcript.
    const shares = rows.map((r) => {
      const chars = [...r.user_messages, ...r.assistant_messages].reduce((n, s) => n + s.length, 0);
      const inputTokens = 600 + Math.ceil(chars / 4);
      const outputTokens = 900;
      return {
        key: r.session_key,
        stuckTurn: isStuckReply(r.assistant_messages[r.assistant_messages.length - 1]),
        stuckReplies: r.assistant_messages.filter(isStuckReply).length,
        inputTokens,
        outputTokens,
        usd: usd(inputTokens, outputTokens),
      };
    });
    const cost = shares.reduce((n, s) => n + s.usd, 0);
    const inT = shares.reduce((n, s) => n + s.inputTokens, 0);
    const outT = shares.reduce((n, s) => n + s.outputTokens, 0);
    calls.push({ kind: "reflection", shares, usd: cost, seq: seq++ });
    const text = `Read ${rows.length} session(s); nothing durable to add this time.\n{"status":"skip","reason":"no durable signal"}`;
    yield {
      type: "assistant",
      message: { content: [{ type: "text", text }], usage: { input_tokens: inT, output_tokens: outT } },
    };
    yield {
      type: "result",
      subtype: "success",
      result: text,
      total_cost_usd: cost,
      usage: { input_tokens: inT, output_tokens: outT },
    };
  })();
}

__setAgentSdkQueryForTests(((params: { prompt: unknown; options?: Record<string, unknown> }) => {
  const o = params.options ?? {};
  const prompt = typeof params.prompt === "string" ? params.prompt : "";
  if (typeof o.cwd === "string" && Array.isArray(o.tools)) return reflectionTurn(o, prompt);
  if (o.maxTurns === 1 && o.persistSession === false) return gateTurn(o, prompt);
  return agentTurn(o, prompt);
}) as never);

// --- Phantom, wired as src/index.ts wires it -------------------------------------------------
const config = await loadConfig();
const db = getDatabase();
runMigrations(db);
const runtime = new AgentRuntime(config, db);
const engine = new EvolutionEngine(undefined, runtime);
const queue = new EvolutionQueue(db);
const cadence = new EvolutionCadence(
  engine,
  queue,
  engine.getEvolutionConfig(),
  loadCadenceConfig(engine.getEvolutionConfig()),
);
engine.setQueueWiring(queue, () => cadence.onEnqueue());
cadence.start();

const KEYS = [
  { name: "alpha", channel: "slack", conversation: "C042" },
  { name: "beta", channel: "telegram", conversation: "77001" },
  { name: "cli", channel: "cli", conversation: "cli:local" },
] as const;
const conversations = new Map<string, { user: string[]; assistant: string[] }>();
const replies: Record<string, string[]> = {};
const pending: Promise<void>[] = [];

/** The router handler of src/index.ts: the turn, then the gate (not awaited there; awaited here, for order). */
async function handle(k: (typeof KEYS)[number], text: string): Promise<void> {
  const key = `${k.channel}:${k.conversation}`;
  const existing = conversations.get(key) ?? { user: [], assistant: [] };
  existing.user.push(text);
  conversations.set(key, existing);
  if (existing.user.length === 1) firstUserToKey.set(text, key);
  const startedAt = new Date().toISOString();
  const response = await runtime.handleMessage(k.channel, k.conversation, text);
  if (response.text) existing.assistant.push(response.text);
  replies[key] = [...(replies[key] ?? []), response.text];
  await engine.enqueueIfWorthy({
    session_id: response.sessionId,
    session_key: key,
    user_id: "user-1",
    user_messages: existing.user,
    assistant_messages: existing.assistant,
    tools_used: [],
    files_tracked: [],
    outcome: response.text.startsWith("Error:") ? "failure" : "success",
    cost_usd: response.cost.totalUsd,
    started_at: startedAt,
    ended_at: new Date().toISOString(),
  });
}

/** A drain the depth trigger started: wait for it, so every run sees the same order. */
async function settleDrain(): Promise<void> {
  const inFlight = (cadence as unknown as { inFlight: Promise<unknown> | null }).inFlight;
  if (inFlight) await inFlight;
}

const turns: Record<string, number> = {};
const send = async (k: (typeof KEYS)[number], wait = true) => {
  const n = (turns[k.name] ?? 0) + 1;
  turns[k.name] = n;
  const p = handle(k, `(${k.name} #${n}) ${QUESTIONS[(n * 3 + k.name.length) % QUESTIONS.length]}`);
  if (wait) {
    await p;
    await settleDrain();
  } else pending.push(p);
};
const QUESTIONS = [
  "Can you look at why the deploy is failing?",
  "Please check the flaky integration test.",
  "Why are we seeing database timeouts at noon?",
  "Draft the migration guide for the v3 release.",
  "What broke the nightly report?",
  "Rename the checkout feature flag everywhere.",
  "How did latency change after yesterday's patch?",
  "Review the retry pull request for me.",
  "Set up the design review for Thursday.",
  "The CSV import fails on the big file, any idea?",
  "Move the cleanup cron away from the backup window.",
  "Summarise the incident channel from yesterday.",
  "Write the SQL for monthly active users by plan.",
];

const [alpha, beta, cli] = KEYS;
for (let r = 0; r < HEALTHY_TURNS; r++) for (const k of KEYS) await send(k);
// The container is recreated: cli:cli:local's SDK session id in data/phantom.db is stale now.
const row = db.query("SELECT sdk_session_id FROM sessions WHERE session_key = ?").get("cli:cli:local") as {
  sdk_session_id: string;
};
stale.add(row.sdk_session_id);
const stuckFromSeq = seq;
for (let r = 0; r < STUCK_MESSAGES; r++) {
  await send(alpha);
  await send(beta);
  // The first message's resume hangs holding the key's lock (its handler is not awaited, as a
  // user does not wait for it); the next ones are bounced while it is held.
  await send(cli, r > 0);
  if (r === 0) await new Promise((res) => setTimeout(res, 50));
}
for (let r = 0; r < EXTRA_ROUNDS; r++) for (const k of KEYS) await send(k);
// A request the guard released finishes its handler (and its gate) now; an unguarded one never does.
await Promise.race([Promise.all(pending), new Promise((res) => setTimeout(res, 500))]);
await settleDrain();
await cadence.triggerNow();
cadence.stop();

let recoveries: unknown[] = [];
try {
  const install = await import(
    pathToFileURL(join(process.env.JUDGE_GUARD_REPO ?? "", "dist/adapters/phantom-install.js")).href
  );
  recoveries = [...(install.installedPhantomGuard()?.recoveries ?? [])];
} catch {
  // not guarded
}
process.stdout.write(
  `\n${JSON.stringify({ calls, replies, stuckFromSeq, hung: hung.length, canned: CANNED_MAIN, recoveries, queueDepth: queue.depth() })}\n`,
);
process.exit(0);
