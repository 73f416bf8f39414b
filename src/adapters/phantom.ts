/**
 * Adapters for Phantom's judge pipeline, typed structurally (no dependency on Phantom's code).
 *
 * This module loads no native code, so it runs under Bun (Phantom's runtime) as well as Node:
 * import it as `judge-guard/phantom` and give it either the in-process guard (Node) or the
 * sidecar client (Bun), both of which satisfy {@link GuardLike}.
 *
 * | Phantom                      | adapter                  | a skip surfaces as                      |
 * |------------------------------|--------------------------|-----------------------------------------|
 * | `afterSession(summary)`      | `guardAfterSession`      | the whole cycle skipped: `skipped(...)`  |
 * | v0.18.2 `callJudge(params)`  | `guardCallJudge`         | the typed error (call sites catch it)   |
 * | main `runJudgeQuery(c, p)`   | `guardRunJudgeQuery`     | the error; the gate gets `evolve: false` |
 * | an Anthropic client          | `guardAnthropicClient`   | the typed error                         |
 *
 * The judge-level adapters learn which session a call belongs to from an async context that
 * `guardAfterSession` (or `withSession`) sets, because judge calls themselves carry no session.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createHash } from "node:crypto";
import type { ReplyFacts } from "../detection/tracker.js";
import { ConfigError } from "../errors.js";
import type { Assessment, AssessOptions, Settlement, Ticket } from "../guard/guard.js";
import type { CallOptions, SkippedOutcome } from "../guard/outcome.js";
import type {
  JudgeRequest,
  PhantomSessionData,
  PhantomSessionSummary,
  SessionRef,
} from "../guard/request.js";

/** What the adapters need of a guard: the in-process `Guard` and the sidecar client both fit. */
export interface GuardLike {
  call<T>(request: JudgeRequest, judge: () => Promise<T> | T, options?: CallOptions<T>): Promise<T>;
  assess(session: SessionRef, options?: AssessOptions): Assessment | Promise<Assessment>;
  /** The halves of a call, for a call the caller makes for several keys at once (main's reflection). */
  admit?(
    request: JudgeRequest,
    options?: { waitMs?: number },
  ): Promise<Ticket | SkippedOutcome> | Ticket | SkippedOutcome;
  settle?(reservationId: string, result: Settlement): Promise<{ costUsd: number }> | { costUsd: number };
}

export type PhantomSession = PhantomSessionSummary | PhantomSessionData;

/**
 * The session a judge call is made for. A mutable cell, so a caller can enter the context before
 * it knows the session (the runtime's turn is still running) and fill it in when it does.
 */
export interface SessionCell {
  session?: PhantomSession;
  /** Facts about the turn's reply the session does not carry (a bounce the runtime did not handle). */
  reply?: ReplyFacts;
  /** The judge calls made in this context, in order (the shape of an evolution cycle). */
  readonly calls: Array<{
    readonly judge: string;
    readonly model: string;
    readonly variant?: string;
    readonly maxTokens?: number;
  }>;
  /** Set when no judge may run in this context (a request the guard released). */
  blocked?: () => Error;
}

const context = new AsyncLocalStorage<SessionCell>();
const warned = new Set<string>();

/** Warns once per adapter that a call outside any session's context went through unguarded. */
function unguarded(adapter: string): void {
  if (warned.has(adapter)) return;
  warned.add(adapter);
  process.emitWarning(
    `${adapter}: a judge call outside any session's context (guardAfterSession or withSession) went through unguarded`,
    { code: "JUDGE_GUARD_UNGUARDED" },
  );
}

/** Phantom's judges call the API with this max_tokens when they name none. */
const PHANTOM_MAX_TOKENS = 4096;

/**
 * What every judge-level adapter does with one call: guard it under the session of the
 * current context (the request built only then), or, outside any, let it through unguarded.
 */
export function guardedCall<R>(
  guard: GuardLike,
  adapter: string,
  request: () => Omit<JudgeRequest, "session">,
  call: () => Promise<R>,
  options?: CallOptions<R>,
): Promise<R> {
  const cell = context.getStore();
  const blocked = cell?.blocked;
  if (blocked) return Promise.reject(blocked());
  const session = cell?.session;
  if (cell === undefined || session === undefined) {
    unguarded(adapter);
    return call();
  }
  const r = request();
  cell.calls.push({
    judge: r.judge,
    model: r.model,
    ...(r.variant !== undefined && { variant: r.variant }),
    ...(r.maxTokens !== undefined && { maxTokens: r.maxTokens }),
  });
  return guard.call({ ...r, session, ...(cell.reply && { reply: cell.reply }) }, call, options);
}

/** Runs `fn` with `session` as the session the judge-level adapters charge their calls to. */
export function withSession<R>(session: PhantomSession, fn: () => R): R {
  return context.run({ session, calls: [] }, fn);
}

/** Runs `fn` in a fresh {@link SessionCell}, returned with fn's result, to see its judge calls. */
export function inSessionCell<R>(
  session: PhantomSession,
  fn: () => R,
  reply?: ReplyFacts,
): { cell: SessionCell; result: R } {
  const cell: SessionCell = { session, calls: [], ...(reply && { reply }) };
  return { cell, result: context.run(cell, fn) };
}

/**
 * Enters a session context for the rest of the caller's synchronous run and what it awaits
 * after (AsyncLocalStorage.enterWith), for code that cannot be wrapped in a callback: the
 * runtime's turn enters it, and the judge calls its caller makes afterwards (v0.18.2's memory
 * consolidation) find the session there.
 */
export function enterSessionCell(): SessionCell {
  const cell: SessionCell = { calls: [] };
  context.enterWith(cell);
  return cell;
}

/** True in a context where no judge may run (a turn whose request the guard released). */
export function currentBlocked(): boolean {
  return context.getStore()?.blocked !== undefined;
}

/** The session cell of the current context, if any. */
export function currentCell(): SessionCell | undefined {
  return context.getStore();
}

/** The session set by {@link withSession} or {@link guardAfterSession}, if any. */
export function currentSession(): PhantomSession | undefined {
  return context.getStore()?.session;
}

/**
 * Tells apart calls of one judge kind on one transcript that use different prompts (the
 * regression gate's golden cases): a hash of the prompt, never the prompt itself.
 */
export function promptVariant(...parts: readonly unknown[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(typeof p === "string" ? p : JSON.stringify(p ?? null)).update("\u0000");
  return h.digest("hex").slice(0, 16);
}

/**
 * Pipeline level: wraps `afterSession(summary)`. A stuck session skips the whole evolution
 * cycle (no judge is called) and returns what `skipped` builds; a healthy one runs inside the
 * session's context, so every guarded judge call in it is charged to the session.
 */
export function guardAfterSession<S extends PhantomSession, R>(
  guard: GuardLike,
  afterSession: (summary: S) => Promise<R>,
  options: {
    skipped: (verdict: Assessment, summary: S) => R | Promise<R>;
    /**
     * The judge calls one cycle makes at least, recorded as skipped (with their estimated cost)
     * when a cycle is skipped. @default Phantom's per-message pair: observation_extraction and
     * consolidation on claude-sonnet-4-6
     */
    judges?: AssessOptions["judges"];
  },
): (summary: S) => Promise<R> {
  if (typeof options?.skipped !== "function") {
    throw ConfigError.option(
      "skipped",
      "a function returning what afterSession returns for a skipped cycle",
      options?.skipped,
      "guardAfterSession",
    );
  }
  const judges = options.judges ?? PHANTOM_CYCLE;
  return async (summary: S) => {
    // In shadow mode `skip` is false: the cycle runs, and the guard only records.
    const verdict = await guard.assess({ session: summary }, { judges });
    if (verdict.skip) return options.skipped(verdict, summary);
    return withSession(summary, () => afterSession(summary));
  };
}

/** The two judges Phantom runs after every message. */
export const PHANTOM_CYCLE: NonNullable<AssessOptions["judges"]> = [
  { judge: "observation_extraction", model: "claude-sonnet-4-6" },
  { judge: "consolidation", model: "claude-sonnet-4-6" },
];

/** v0.18.2's `callJudge` parameters (the fields the guard reads). */
export interface CallJudgeParams {
  readonly model: string;
  readonly systemPrompt: string;
  readonly userMessage: string;
  readonly schemaName?: string;
  readonly maxTokens?: number;
}

export interface JudgeAdapterOptions<P> {
  /** The judge kind (cost bucket) of a call. @default params.schemaName ?? "judge" */
  readonly judgeOf?: (params: P) => string;
  /** max_tokens when the call does not say. @default 4096 (Phantom's) */
  readonly maxTokens?: number;
}

function kind<P extends { schemaName?: string }>(params: P, options: JudgeAdapterOptions<P>): string {
  return options.judgeOf?.(params) ?? params.schemaName ?? "judge";
}

/**
 * Judge level, v0.18.2: wraps `callJudge(params)`. Each call inside a session's context is
 * admitted, budgeted and settled with the `JudgeResult`'s tokens; a skip throws the typed error
 * (every v0.18.2 call site catches judge errors and falls back). Outside a session's context
 * the call goes through unguarded.
 */
export function guardCallJudge<P extends CallJudgeParams, R>(
  guard: GuardLike,
  callJudge: (params: P) => Promise<R>,
  options: JudgeAdapterOptions<P> = {},
): (params: P) => Promise<R> {
  return (params: P) =>
    guardedCall(
      guard,
      "guardCallJudge",
      () => ({
        judge: kind(params, options),
        model: params.model,
        maxTokens: params.maxTokens ?? options.maxTokens ?? PHANTOM_MAX_TOKENS,
        variant: promptVariant(params.systemPrompt, params.userMessage),
      }),
      () => callJudge(params),
    );
}

/** Current main's `runJudgeQuery(config, params)` parameters (the fields the guard reads). */
export interface JudgeQueryParams {
  readonly systemPrompt: string;
  readonly userMessage: string;
  /** The result schema: the gate is recognised by its schema object (`p.schema === GateSchema`). */
  readonly schema?: unknown;
  readonly model?: string;
  readonly maxTokens?: number;
  readonly schemaName?: string;
}

export interface RunJudgeQueryOptions<P, R> extends JudgeAdapterOptions<P> {
  /** The model when a call names none (the Agent SDK default). @default "claude-haiku-4-5" */
  readonly defaultModel?: string;
  /**
   * Which calls are the evolution gate, whose errors fail towards running evolution: compare
   * the schema, e.g. `(p) => p.schema === GateResultSchema`.
   */
  readonly isGate?: (params: P) => boolean;
  /** The gate's answer for a skipped call. @default a JudgeQueryResult with data `{evolve: false}` */
  readonly gateResult?: (skip: SkippedOutcome, params: P) => R;
}

/** A `JudgeQueryResult` that says "do not evolve", for a gate call the guard skipped. */
export function doNotEvolve(skip: SkippedOutcome, model: string) {
  return {
    verdict: "fail" as const,
    confidence: 1,
    reasoning: `judge-guard skipped this gate: ${skip.reason}`,
    data: { evolve: false, reason: `judge-guard: ${skip.reason}` },
    model,
    inputTokens: 0,
    outputTokens: 0,
    costUsd: 0,
    durationMs: 0,
  };
}

/**
 * Judge level, current main: wraps `runJudgeQuery(config, params)`. A failed subprocess's
 * `JudgeSubprocessError.partialCost` is charged (the spend was real). The gate never receives an
 * error for a skip (its errors fail towards firing evolution): it gets `{evolve: false}`.
 */
export function guardRunJudgeQuery<C, P extends JudgeQueryParams, R>(
  guard: GuardLike,
  runJudgeQuery: (config: C, params: P) => Promise<R>,
  options: RunJudgeQueryOptions<P, R> = {},
): (config: C, params: P) => Promise<R> {
  return (config: C, params: P) => {
    const model = params.model ?? options.defaultModel ?? "claude-haiku-4-5";
    const gate = options.isGate?.(params) === true;
    return guardedCall(
      guard,
      "guardRunJudgeQuery",
      () => ({
        judge: kind(params, options),
        model,
        maxTokens: params.maxTokens ?? options.maxTokens ?? PHANTOM_MAX_TOKENS,
        variant: promptVariant(params.systemPrompt, params.userMessage),
      }),
      () => runJudgeQuery(config, params),
      gate
        ? {
            substitute: (skip) =>
              options.gateResult ? options.gateResult(skip, params) : (doNotEvolve(skip, model) as R),
          }
        : {},
    );
  };
}

/** v0.18.2's judge kinds (its cost buckets), told apart by a property only their result schema has. */
const V018_SCHEMA_KINDS: ReadonlyArray<readonly [string, string]> = [
  ["observations", "observation_extraction"],
  ["extracted_facts", "consolidation"],
  ["violated_principles", "constitution_gate"],
  ["flags", "safety_gate"],
  ["case_id", "regression_gate"],
  ["goal_accomplished", "quality_assessment"],
];

/**
 * The judge kind of a v0.18.2 `messages.parse` request, read from its structured-output schema
 * (`output_config.format.schema`): `observation_extraction`, `consolidation`, `constitution_gate`,
 * `safety_gate`, `regression_gate`, `quality_assessment`, or "judge" for anything else.
 */
export function phantomJudgeKind(params: AnthropicParams): string {
  const format = (params.output_config as { format?: { schema?: { properties?: object } } } | undefined)
    ?.format;
  const properties = format?.schema?.properties;
  if (properties === undefined || properties === null) return "judge";
  for (const [property, kind] of V018_SCHEMA_KINDS) if (property in properties) return kind;
  return "judge";
}

/** The part of an Anthropic SDK client the guard wraps. */
export interface AnthropicLike {
  readonly messages: {
    // `any`: every Anthropic SDK version's overloaded signatures must fit (the real client's
    // parameter types are interfaces, which an index-signature type would not accept).
    // biome-ignore lint/suspicious/noExplicitAny: see above
    create(params: any, ...rest: any[]): Promise<unknown>;
    // biome-ignore lint/suspicious/noExplicitAny: see above
    parse?(params: any, ...rest: any[]): Promise<unknown>;
  };
}

export interface AnthropicParams {
  readonly model: string;
  readonly max_tokens?: number;
  readonly system?: unknown;
  readonly messages?: unknown;
  readonly [key: string]: unknown;
}

/**
 * Client level: wraps an Anthropic-SDK-shaped client so every `messages.create` and
 * `messages.parse` made inside a session's context is guarded; its `usage` (cache tokens
 * included) is what is charged. Give the wrapped client to Phantom's `setClient(...)` and wrap
 * `afterSession` with {@link guardAfterSession}: every v0.18.2 judge is then guarded.
 */
export function guardAnthropicClient<C extends AnthropicLike>(
  guard: GuardLike,
  client: C,
  options: { judgeOf?: (params: AnthropicParams) => string } = {},
): C {
  const judgeOf = options.judgeOf ?? phantomJudgeKind;
  const wrap =
    (method: "create" | "parse") =>
    (params: AnthropicParams, ...rest: unknown[]) => {
      const original = client.messages[method]!.bind(client.messages) as (
        p: AnthropicParams,
        ...r: unknown[]
      ) => Promise<unknown>;
      return guardedCall(
        guard,
        "guardAnthropicClient",
        () => ({
          judge: judgeOf(params),
          model: params.model,
          maxTokens: params.max_tokens ?? PHANTOM_MAX_TOKENS,
          variant: promptVariant(params.system, params.messages),
        }),
        () => original(params, ...rest),
      );
    };
  const messages = new Proxy(client.messages, {
    get(target, prop, receiver) {
      if (prop === "create" || (prop === "parse" && typeof target.parse === "function")) return wrap(prop);
      return Reflect.get(target, prop, receiver);
    },
  });
  return new Proxy(client, {
    get(target, prop, receiver) {
      return prop === "messages" ? messages : Reflect.get(target, prop, receiver);
    },
  });
}
