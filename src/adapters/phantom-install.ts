/**
 * Installs the guard into a running Phantom without touching its source: the Bun preload
 * (`judge-guard/phantom/preload`) calls {@link installPhantomGuard} before Phantom's own entry
 * point runs, and it wraps methods on the prototypes of Phantom's own classes, which every
 * instance Phantom creates afterwards uses. Module exports cannot be reassigned (ESM bindings
 * are read-only), class prototypes can.
 *
 * | version  | where                                        | what the guard does there                                      |
 * |----------|----------------------------------------------|----------------------------------------------------------------|
 * | both     | `AgentRuntime.prototype.handleMessage`       | enters the turn's session context (for judges called after it)  |
 * | both     | `AgentRuntime.prototype.runQuery`            | lets the guard release a request that hangs (the stuck key's lock) |
 * | v0.18.2  | `setClient(...)` of `evolution/judges/client` | every judge call (six engine judges, consolidation) is guarded |
 * | v0.18.2  | `EvolutionEngine.prototype.afterSession`      | a stuck session skips the whole cycle                           |
 * | main     | `EvolutionEngine.prototype.enqueueIfWorthy`   | the gate runs in the session's context                          |
 * | main     | `AgentRuntime.prototype.judgeQuery`           | the gate is guarded; a skip answers `{evolve: false}`           |
 * | main     | `EvolutionEngine.prototype.runDrainPipeline`  | stuck keys leave the batch; the batch is admitted per key       |
 *
 * Recovery: when a key turns stuck (a new episode), the guard releases the request that holds
 * the key's in-memory lock (its promise is answered with a short error; the hung SDK call itself
 * runs on until Phantom's own timeout) and clears the key's SDK session through Phantom's own
 * `SessionStore.clearSdkSessionId`, so the next message starts a fresh session. Once per episode.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import {
  ConfigError,
  isBudgetError,
  isStuckSessionError,
  type JudgeSkippedError,
  PhantomInstallError,
  StuckSessionError,
} from "../errors.js";
import type { Assessment, AssessOptions } from "../guard/guard.js";
import type { CallOptions, SkippedOutcome } from "../guard/outcome.js";
import type { JudgeRequest, PhantomSessionSummary, SessionRef } from "../guard/request.js";
import {
  type AnthropicLike,
  currentBlocked,
  currentCell,
  doNotEvolve,
  enterSessionCell,
  type GuardLike,
  guardAnthropicClient,
  guardedCall,
  inSessionCell,
  type PhantomSession,
  promptVariant,
} from "./phantom.js";

export type PhantomVersion = "v0.18" | "main";

export interface PhantomInstallOptions {
  /** Phantom's folder (where its package.json is). @default process.cwd() */
  readonly root?: string;
  /** Which pipeline to guard. @default detected from the files under `root` */
  readonly version?: PhantomVersion;
  /**
   * v0.18.2: the Anthropic client the judges use, wrapped by the guard and given to Phantom's
   * `setClient`. @default a `new Anthropic()` from Phantom's own dependency, created at first use
   */
  readonly judgeClient?: AnthropicLike;
  /**
   * Release a stuck key's hung request and clear its SDK session, once per episode. Off, the
   * guard only skips and records (the key stays stuck until Phantom's own timeout or a restart).
   * @default true
   */
  readonly recover?: boolean;
  /**
   * Only a request running at least this long is released: a younger one may be a long healthy
   * turn (the user's pings during it bounce with the busy line too). @default 10 minutes
   */
  readonly releaseAfterMs?: number;
  /** Where the install reports what it does (one line each, no transcript text). @default console.error */
  readonly log?: (line: string) => void;
}

/** One stuck episode the runtime was told about. */
export interface Recovery {
  readonly sessionKey: string;
  readonly episodeId: string;
  /** A request holding the key's lock was released. */
  readonly released: number;
  /** The key's SDK session was cleared. */
  readonly cleared: boolean;
  readonly at: string;
}

export interface PhantomGuardHandle {
  readonly version: PhantomVersion;
  readonly root: string;
  /** Recoveries so far, oldest first. */
  readonly recoveries: readonly Recovery[];
  /**
   * v0.18.2: wraps an Anthropic client as the installed guard does. Give a client of your own to
   * Phantom through it: `setClient(handle.wrapJudgeClient(client))`.
   */
  wrapJudgeClient<C extends AnthropicLike>(client: C): C;
  /** Puts every wrapped method back. */
  uninstall(): void;
}

interface CycleCall {
  readonly judge: string;
  readonly model: string;
  readonly variant?: string;
  readonly maxTokens?: number;
}

/** The judge calls a v0.18.2 cycle makes at least when no cycle of its key has been seen. */
const V018_CYCLE = [{ judge: "observation_extraction", model: "claude-sonnet-4-6" }] as const;
/** The model main's reflection starts at (it escalates; the reported cost is what is charged). */
const REFLECTION_MODEL = "claude-haiku-4-5";
const REFLECTION_MAX_TOKENS = 16_384;
const KEYS_REMEMBERED = 10_000;
const DEFAULT_RELEASE_AFTER_MS = 10 * 60_000;
/** The sidecar takes at most this many judges in one assessment. */
const MAX_CYCLE_JUDGES = 64;
const GLOBAL_HANDLE = Symbol.for("judge-guard.phantom.install");
/** The gate's answer in a turn the guard released (no judge may run there; the gate gets no error). */
const RELEASED_SKIP = { reason: "stuck_session" } as unknown as SkippedOutcome;

/** The turn a released request answers with: the user is asked to send the message again. */
function releasedText(episodeId: string): string {
  return `Error: judge-guard released this request because the session was stuck (episode ${episodeId}). Please send your message again.`;
}

export function detectPhantomVersion(root: string): PhantomVersion | undefined {
  if (existsSync(join(root, "src/evolution/judges/client.ts"))) return "v0.18";
  if (existsSync(join(root, "src/evolution/gate.ts"))) return "main";
  return undefined;
}

type Method = (this: unknown, ...args: never[]) => unknown;
type Proto = Record<string, unknown>;

/** Replaces `proto[name]`, remembering the original for uninstall. */
function wrap(restore: Array<() => void>, proto: Proto, name: string, make: (orig: Method) => Method): void {
  const orig = proto[name];
  if (typeof orig !== "function") {
    throw new PhantomInstallError(
      `Phantom's ${name}() was not found; is this a Phantom version judge-guard supports (v0.18.2 or main)?`,
    );
  }
  proto[name] = make(orig as Method);
  restore.push(() => {
    proto[name] = orig;
  });
}

/** A bounded map: the oldest key goes first. */
function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > KEYS_REMEMBERED) map.delete(map.keys().next().value as K);
}

async function load(root: string, path: string): Promise<Record<string, unknown>> {
  const file = join(root, path);
  if (!existsSync(file)) {
    throw new ConfigError(
      "JUDGE_GUARD_PHANTOM_ROOT",
      `${file} is missing: give the Phantom folder (JUDGE_GUARD_PHANTOM_ROOT)`,
    );
  }
  return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
}

/**
 * Installs the guard into Phantom's classes (see the module comment). Call it before Phantom
 * creates its runtime and engine, e.g. from a Bun preload. Installing twice is an error.
 */
export async function installPhantomGuard(
  guard: GuardLike,
  options: PhantomInstallOptions = {},
): Promise<PhantomGuardHandle> {
  const g = globalThis as Record<symbol, unknown>;
  if (g[GLOBAL_HANDLE] !== undefined) throw new PhantomInstallError("the Phantom guard is installed already");
  const root = resolve(options.root ?? process.cwd());
  const version = options.version ?? detectPhantomVersion(root);
  if (version === undefined) {
    throw new ConfigError(
      "JUDGE_GUARD_PHANTOM_ROOT",
      `${root} does not look like Phantom (no src/evolution/judges/client.ts or src/evolution/gate.ts): set JUDGE_GUARD_PHANTOM_ROOT to Phantom's folder`,
    );
  }
  const log = options.log ?? ((line: string) => console.error(line));
  const restore: Array<() => void> = [];
  const recoveries: Recovery[] = [];

  // --- recovery ------------------------------------------------------------------------------
  interface InFlight {
    readonly release: (response: unknown) => void;
    readonly started: number;
  }
  const releaseAfterMs = options.releaseAfterMs ?? DEFAULT_RELEASE_AFTER_MS;
  const inflight = new Map<string, Set<InFlight>>();
  const runtimes = new Set<WeakRef<object>>();
  const recovered = new Set<string>();
  /** Keys this process last saw stuck, with their episode. */
  const stuckKeys = new Map<string, string>();

  const recover = (sessionKey: string, episodeId: string): void => {
    if (recovered.has(episodeId) || options.recover === false) return;
    // A request younger than releaseAfterMs may be a long healthy turn the user pinged during
    // (its pings bounce too): leave it, and look again at the episode's next stuck verdict.
    const running = [...(inflight.get(sessionKey) ?? [])];
    if (running.some((f) => Date.now() - f.started < releaseAfterMs)) return;
    recovered.add(episodeId);
    let released = 0;
    for (const f of running) {
      f.release({
        text: releasedText(episodeId),
        sessionId: "",
        cost: { totalUsd: 0, inputTokens: 0, outputTokens: 0, modelUsage: {} },
        durationMs: 0,
      });
      released++;
    }
    let cleared = false;
    for (const ref of runtimes) {
      const rt = ref.deref() as { sessionStore?: { clearSdkSessionId?: (k: string) => void } } | undefined;
      if (rt === undefined) {
        runtimes.delete(ref);
        continue;
      }
      try {
        rt.sessionStore?.clearSdkSessionId?.(sessionKey);
        cleared = rt.sessionStore?.clearSdkSessionId !== undefined || cleared;
      } catch (e) {
        log(`judge-guard: could not clear the SDK session of ${sessionKey}: ${(e as Error).message}`);
      }
    }
    recoveries.push({ sessionKey, episodeId, released, cleared, at: new Date().toISOString() });
    log(
      `judge-guard: session ${sessionKey} is stuck (episode ${episodeId}): released ${released} hung request(s), ${cleared ? "cleared its SDK session" : "no SDK session to clear"}`,
    );
  };

  const sawVerdict = (sessionKey: string, v: { stuck: boolean; episodeId: string | null }): void => {
    if (v.stuck && v.episodeId !== null) {
      remember(stuckKeys, sessionKey, v.episodeId);
      recover(sessionKey, v.episodeId);
    } else if (!v.stuck) stuckKeys.delete(sessionKey);
  };
  const sawSkip = (e: JudgeSkippedError): void => {
    const d = e.details;
    if (isStuckSessionError(e) && d.episodeId !== undefined)
      sawVerdict(d.sessionKey, { stuck: true, episodeId: d.episodeId });
  };

  /** The guard as the installed wrappers use it: every stuck verdict or skip starts recovery. */
  const watched: GuardLike = {
    async call<T>(request: JudgeRequest, judge: () => Promise<T> | T, opts?: CallOptions<T>): Promise<T> {
      const substitute = opts?.substitute;
      try {
        return await guard.call(request, judge, {
          ...opts,
          ...(substitute && {
            substitute: (skip: SkippedOutcome) => {
              sawSkip(skip.error);
              return substitute(skip);
            },
          }),
        });
      } catch (e) {
        if (isStuckSessionError(e)) sawSkip(e);
        throw e;
      }
    },
    async assess(session: SessionRef, opts?: AssessOptions): Promise<Assessment> {
      const v = await guard.assess(session, opts);
      const s = session.session as { session_key?: string; sessionKey?: string } | undefined;
      const key = session.sessionKey ?? s?.session_key ?? s?.sessionKey;
      if (key !== undefined) sawVerdict(key, v);
      return v;
    },
  };

  // --- the runtime: both versions ------------------------------------------------------------
  const runtimeMod = await load(root, "src/agent/runtime.ts");
  const AgentRuntime = runtimeMod.AgentRuntime as { prototype: Proto } | undefined;
  if (AgentRuntime === undefined) throw new PhantomInstallError("Phantom's AgentRuntime was not found");
  const transcripts = new Map<string, { user: string[]; assistant: string[] }>();
  /** Responses made by a release: the turn that receives one runs no judges. */
  const releasedResponses = new WeakSet<object>();
  /** Set by runQuery: Phantom calls it synchronously from handleMessage unless it bounces the message. */
  let ranAgent = false;

  wrap(
    restore,
    AgentRuntime.prototype,
    "handleMessage",
    (orig) =>
      function handleMessage(this: unknown, ...args: never[]) {
        const [channelId, conversationId, text] = args as unknown as [string, string, string];
        const sessionKey = `${channelId}:${conversationId}`;
        // Entered before the turn runs, so what its caller does after it (v0.18.2's consolidation)
        // is in this context; filled in when the reply is known.
        const cell = enterSessionCell();
        runtimes.add(new WeakRef(this as object));
        const t = transcripts.get(sessionKey) ?? { user: [], assistant: [] };
        remember(transcripts, sessionKey, t);
        t.user.push(text);
        ranAgent = false;
        const turn = orig.apply(this, args);
        const handled = ranAgent;
        return (turn as Promise<{ text: string; sessionId: string; cost?: { totalUsd?: number } }>).then(
          (response) => {
            if (response?.text) t.assistant.push(response.text);
            // Answered without running the agent (the key's lock is held): nothing to judge.
            if (!handled) {
              cell.reply = {
                costUsd: response?.cost?.totalUsd ?? 0,
                sdkSessionId: response?.sessionId ?? "",
                outcome: response?.text?.startsWith("Error:") ? "failure" : "success",
                handled: false,
              };
            }
            if (releasedResponses.has(response)) {
              cell.blocked = () =>
                new StuckSessionError({ sessionKey, judge: "judge", model: "none", savedUsd: 0 });
            } else {
              cell.session = {
                sessionKey,
                userMessages: t.user,
                assistantMessages: t.assistant,
                sessionId: response?.sessionId ?? "",
                costUsd: response?.cost?.totalUsd ?? 0,
                outcome: response?.text?.startsWith("Error:") ? "failure" : "success",
              };
            }
            return response;
          },
        );
      },
  );

  wrap(
    restore,
    AgentRuntime.prototype,
    "runQuery",
    (orig) =>
      function runQuery(this: unknown, ...args: never[]) {
        const sessionKey = args[0] as unknown as string;
        ranAgent = true;
        let release!: (response: unknown) => void;
        const released = new Promise((r) => {
          release = (response) => {
            releasedResponses.add(response as object);
            r(response);
          };
        });
        const entry: InFlight = { release, started: Date.now() };
        const set = inflight.get(sessionKey) ?? new Set<InFlight>();
        set.add(entry);
        inflight.set(sessionKey, set);
        const run = orig.apply(this, args) as Promise<unknown>;
        return Promise.race([run, released]).finally(() => {
          set.delete(entry);
          if (set.size === 0 && inflight.get(sessionKey) === set) inflight.delete(sessionKey);
        });
      },
  );

  const engineMod = await load(root, "src/evolution/engine.ts");
  const EvolutionEngine = engineMod.EvolutionEngine as { prototype: Proto } | undefined;
  if (EvolutionEngine === undefined) throw new PhantomInstallError("Phantom's EvolutionEngine was not found");
  const wrapJudgeClient = <C extends AnthropicLike>(client: C): C => guardAnthropicClient(watched, client);

  if (version === "v0.18") {
    // --- v0.18.2: every judge through one client; a stuck session skips the whole cycle --------
    const clientMod = await load(root, "src/evolution/judges/client.ts");
    const setClient = clientMod.setClient as ((c: unknown) => void) | undefined;
    if (typeof setClient !== "function") throw new PhantomInstallError("Phantom's setClient was not found");
    const judgeClient = options.judgeClient ?? lazyAnthropic(root);
    setClient(wrapJudgeClient(judgeClient));
    restore.push(() => setClient(null));

    // What a skipped cycle would have called: the key's last cycle that ran, with its regression
    // gate sized to the golden suite as it is now (one call per golden case and proposed change;
    // the suite grows as Phantom learns, so the last cycle's count alone would under-count).
    const suiteMod = await load(root, "src/evolution/golden-suite.ts");
    const loadSuite = suiteMod.loadSuite as ((config: unknown) => unknown[]) | undefined;
    const suiteSize = (engine: unknown): number | undefined => {
      try {
        const config = (engine as { config?: unknown }).config;
        return config === undefined || loadSuite === undefined ? undefined : loadSuite(config).length;
      } catch {
        return undefined;
      }
    };
    interface Cycle {
      readonly calls: ReadonlyArray<CycleCall>;
      readonly suite: number | undefined;
    }
    const cycles = new Map<string, Cycle>();
    const wouldCall = (key: string, engine: unknown): CycleCall[] => {
      const last = cycles.get(key);
      if (last === undefined) return [...V018_CYCLE];
      const now = suiteSize(engine);
      const regression = last.calls.filter((c) => c.judge === "regression_gate");
      if (regression.length === 0 || last.suite === undefined || last.suite === 0 || now === undefined)
        return [...last.calls];
      const n = Math.round((regression.length * now) / last.suite);
      const first = regression[0]!;
      return [
        ...last.calls.filter((c) => c.judge !== "regression_gate"),
        ...Array.from({ length: n }, (_, i) => ({ ...first, variant: `golden-${i}` })),
      ];
    };
    wrap(
      restore,
      EvolutionEngine.prototype,
      "afterSession",
      (orig) =>
        async function afterSession(this: unknown, ...args: never[]) {
          const summary = args[0] as unknown as PhantomSessionSummary;
          const engine = this as { getCurrentVersion?: () => number };
          const skipped = () => ({
            version: engine.getCurrentVersion?.() ?? 0,
            changes_applied: [],
            changes_rejected: [],
          });
          const turn = currentCell();
          if (turn?.blocked) return skipped();
          const judges = wouldCall(summary.session_key, this).slice(0, MAX_CYCLE_JUDGES);
          const reply = turn?.reply;
          const verdict = await watched.assess({ session: summary, ...(reply && { reply }) }, { judges });
          if (verdict.skip) return skipped();
          const suite = suiteSize(this);
          const { cell, result } = inSessionCell(
            summary,
            () => orig.apply(this, args) as Promise<unknown>,
            reply,
          );
          try {
            return await result;
          } finally {
            if (cell.calls.length > 0)
              remember(cycles, summary.session_key, { calls: distinctVotes(cell.calls), suite });
          }
        },
    );
  } else {
    // --- main: the gate and the reflection -------------------------------------------------
    const gatePrompt = await load(root, "src/evolution/gate-prompt.ts");
    const GateSchema = gatePrompt.GateJudgeResult;
    wrap(
      restore,
      EvolutionEngine.prototype,
      "enqueueIfWorthy",
      (orig) =>
        async function enqueueIfWorthy(this: unknown, ...args: never[]) {
          const session = args[0] as unknown as PhantomSession;
          // A turn whose request the guard released: its gate runs in that (blocked) context and is
          // answered "do not evolve" (see judgeQuery), never an error.
          if (currentBlocked()) return orig.apply(this, args);
          const result = (await inSessionCell(session, () => orig.apply(this, args), currentCell()?.reply)
            .result) as {
            decision?: { reason?: string };
          };
          // A gate skipped as stuck also keeps the session's row out of the next drain: record the
          // reflection share it would have cost (assess records the judges it is given as skipped).
          if (result?.decision?.reason === "judge-guard: stuck_session") {
            await watched.assess(
              { session: session as PhantomSessionSummary },
              {
                judges: [{ judge: "reflection", model: REFLECTION_MODEL, maxTokens: REFLECTION_MAX_TOKENS }],
              },
            );
          }
          return result;
        },
    );
    wrap(
      restore,
      AgentRuntime.prototype,
      "judgeQuery",
      (orig) =>
        function judgeQuery(this: unknown, ...args: never[]) {
          const o = args[0] as unknown as {
            systemPrompt: string;
            userMessage: string;
            schema?: unknown;
            model?: string;
            maxTokens?: number;
          };
          const config = (this as { config?: { judge_model?: string; model?: string } }).config;
          const model = o.model ?? config?.judge_model ?? config?.model ?? REFLECTION_MODEL;
          const gate = o.schema !== undefined && o.schema === GateSchema;
          if (gate && currentBlocked()) return Promise.resolve(doNotEvolve(RELEASED_SKIP, model));
          return guardedCall(
            watched,
            "phantom judgeQuery",
            () => ({
              judge: gate ? "gate" : "judge_query",
              model,
              maxTokens: o.maxTokens ?? 4096,
              variant: promptVariant(o.systemPrompt, o.userMessage),
            }),
            () => orig.apply(this, args) as Promise<unknown>,
            gate
              ? {
                  // The guard's own decisions (stuck, budget) answer "do not evolve"; anything else
                  // (the ledger failed) is the gate's error, which Phantom fails towards firing.
                  substitute: (skip: SkippedOutcome) => {
                    if (skip.reason === "stuck_session" || isBudgetError(skip.error))
                      return doNotEvolve(skip, model);
                    throw skip.error;
                  },
                }
              : {},
          );
        },
    );
    wrap(
      restore,
      EvolutionEngine.prototype,
      "runDrainPipeline",
      (orig) =>
        async function runDrainPipeline(this: unknown, ...args: never[]) {
          const batch = args[0] as unknown as Array<{
            session_key: string;
            session_summary: PhantomSessionSummary;
          }>;
          const kept: typeof batch = [];
          const tickets: Array<{ id: string; chars: number }> = [];
          // A row the guard could not look at (a malformed summary) stays in the batch: the
          // guard's own trouble must not stop Phantom's learning. Every admitted row is settled.
          const looked = await Promise.allSettled(
            batch.map(async (row) => {
              // Asked for every row, not only keys seen stuck: a key that recovered must reach drains again.
              const v = await watched.assess({ session: row.session_summary });
              if (v.stuck) return;
              if (guard.admit !== undefined) {
                const t = await guard.admit({
                  judge: "reflection",
                  model: REFLECTION_MODEL,
                  session: row.session_summary,
                  maxTokens: REFLECTION_MAX_TOKENS,
                });
                if (t.status !== "admitted") return;
                tickets.push({ id: t.reservationId, chars: transcriptChars(row.session_summary) });
              }
              kept.push(row);
            }),
          );
          looked.forEach((r, i) => {
            if (r.status === "fulfilled") return;
            kept.push(batch[i]!);
            log(
              `judge-guard: a queued session could not be checked and goes to the drain unguarded (${(r.reason as { code?: string })?.code ?? (r.reason as Error)?.name ?? "error"})`,
            );
          });
          if (kept.length < batch.length) {
            log(
              `judge-guard: ${batch.length - kept.length} of ${batch.length} queued session(s) left out of the drain (stuck or over budget)`,
            );
          }
          let result: { costUsd?: number; status?: string; error?: string | null };
          try {
            result = (await orig.apply(this, [kept] as never[])) as typeof result;
          } catch (e) {
            await settleShares(guard, tickets, 0, false);
            throw e;
          }
          await settleShares(guard, tickets, result?.costUsd ?? 0, !result?.error);
          return result;
        },
    );
  }

  const handle: PhantomGuardHandle = {
    version,
    root,
    recoveries,
    wrapJudgeClient,
    uninstall() {
      for (const r of restore.reverse()) r();
      restore.length = 0;
      delete g[GLOBAL_HANDLE];
    },
  };
  g[GLOBAL_HANDLE] = handle;
  log(`judge-guard: guarding Phantom (${version === "v0.18" ? "v0.18.x" : "main"}) at ${root}`);
  return handle;
}

/** The handle of the guard installed in this process (by the preload), if any. */
export function installedPhantomGuard(): PhantomGuardHandle | undefined {
  return (globalThis as Record<symbol, unknown>)[GLOBAL_HANDLE] as PhantomGuardHandle | undefined;
}

/**
 * A cycle's calls as would-be calls: multiJudge's votes are identical requests, each a call the
 * unguarded pipeline makes, so the second and third get their own variant (saved once each).
 */
function distinctVotes<C extends { judge: string; model: string; variant?: string }>(
  calls: readonly C[],
): C[] {
  const seen = new Map<string, number>();
  return calls.map((c) => {
    const id = `${c.judge}\u0000${c.model}\u0000${c.variant ?? ""}`;
    const n = (seen.get(id) ?? 0) + 1;
    seen.set(id, n);
    return n === 1 ? c : { ...c, variant: `${c.variant ?? ""}#${n}` };
  });
}

function transcriptChars(s: PhantomSessionSummary | undefined): number {
  let n = 0;
  for (const m of s?.user_messages ?? []) n += m.length;
  for (const m of s?.assistant_messages ?? []) n += m.length;
  return n;
}

/** Charges a batch's cost to its keys in proportion to their transcripts (the reflection reads them all). */
async function settleShares(
  guard: GuardLike,
  tickets: ReadonlyArray<{ id: string; chars: number }>,
  costUsd: number,
  ok: boolean,
): Promise<void> {
  if (guard.settle === undefined || tickets.length === 0) return;
  const total = tickets.reduce((n, t) => n + Math.max(1, t.chars), 0);
  await Promise.all(
    tickets.map((t) => guard.settle!(t.id, { ok, costUsd: (costUsd * Math.max(1, t.chars)) / total })),
  );
}

/** An Anthropic client from Phantom's own dependency, created at its first call (it needs the API key then). */
function lazyAnthropic(root: string): AnthropicLike {
  let client: AnthropicLike | undefined;
  const real = (): AnthropicLike => {
    if (client === undefined) {
      const req = createRequire(join(root, "package.json"));
      const mod = req("@anthropic-ai/sdk") as {
        default?: new () => AnthropicLike;
        Anthropic?: new () => AnthropicLike;
      };
      const Anthropic = mod.default ?? mod.Anthropic;
      if (Anthropic === undefined) throw new PhantomInstallError("@anthropic-ai/sdk has no Anthropic class");
      client = new Anthropic();
    }
    return client;
  };
  return {
    messages: {
      create: (params: unknown, ...rest: unknown[]) => real().messages.create(params, ...rest),
      parse: (params: unknown, ...rest: unknown[]) => real().messages.parse!(params, ...rest),
    },
  };
}
