import type { ReplyFacts } from "../detection/tracker.js";
import { LIMITS } from "../domain/limits.js";
import { InvalidRequestError } from "../errors.js";
import { LARGEST_CONTEXT_TOKENS } from "../pricing/prices.js";
import { shape } from "../util/describe.js";

/**
 * Phantom's `SessionSummary` (evolution engine), field names verbatim. `wire/schema.ts` checks
 * that its `sessionSummary` shape, which the sidecar and replay read, takes exactly this.
 */
export interface PhantomSessionSummary {
  readonly session_id?: string | undefined;
  readonly session_key: string;
  readonly user_id?: string | undefined;
  readonly user_messages: readonly string[];
  readonly assistant_messages: readonly string[];
  readonly tools_used?: readonly string[] | undefined;
  readonly files_tracked?: readonly string[] | undefined;
  readonly outcome?: string | undefined;
  readonly cost_usd?: number | undefined;
  readonly started_at?: string | undefined;
  readonly ended_at?: string | undefined;
}

/** `snake_case` to `camelCase`, as a type. */
type Camel<S extends string> = S extends `${infer Head}_${infer Tail}`
  ? `${Head}${Capitalize<Camel<Tail>>}`
  : S;
export type CamelCased<T> = { [K in keyof T as Camel<K & string>]: T[K] };

/** Phantom's `SessionData` (memory consolidation): the same data in camelCase. */
export type PhantomSessionData = CamelCased<PhantomSessionSummary>;

/**
 * One judge call the guard is asked to admit. Give the transcript either as a Phantom
 * `session` (either casing) or as `sessionKey` plus the two message arrays; explicit fields win
 * over the session's. The arrays are the whole transcript so far, as Phantom sends it.
 */
export interface JudgeRequest {
  /** Judge kind, e.g. "observation_extraction" or "quality_assessment". */
  readonly judge: string;
  /** Model id the judge will call, e.g. "claude-sonnet-4-6". */
  readonly model: string;
  readonly session?: PhantomSessionSummary | PhantomSessionData;
  readonly sessionKey?: string;
  readonly userMessages?: readonly string[];
  readonly assistantMessages?: readonly string[];
  /** Facts about the latest reply; taken from `session` (cost_usd, session_id, outcome) when absent. */
  readonly reply?: ReplyFacts;
  /** The judge's max_tokens, which bounds its output cost. */
  readonly maxTokens?: number;
  /**
   * The models this call may escalate to, in order, each run in turn when the one before it
   * escalates (Phantom's reflection: Haiku, then Sonnet, then Opus). Its worst case, which
   * admission holds against the caps while it runs, is the sum over the chain. `[]`: it never
   * escalates. Absent: the guard's `escalation` option decides.
   */
  readonly escalation?: readonly string[];
  /**
   * Tells apart calls of one judge kind on one transcript that are not interchangeable, e.g.
   * the golden case of a regression judge or a hash of the prompt. Identical requests (same
   * key, judge, model, variant and transcript) reuse one verdict.
   */
  readonly variant?: string;
}

export interface NormalizedRequest {
  readonly sessionKey: string;
  readonly judge: string;
  readonly model: string;
  readonly userMessages: readonly string[];
  readonly assistantMessages: readonly string[];
  readonly facts: ReplyFacts | undefined;
  readonly maxTokens: number | undefined;
  readonly escalation: readonly string[] | undefined;
  readonly variant: string;
}

function label(value: unknown, field: string): string {
  if (typeof value !== "string" || value.length === 0) {
    throw new InvalidRequestError(field, `${field} must be a non-empty string, got ${shape(value)}`);
  }
  if (value.length > LIMITS.label) {
    throw new InvalidRequestError(
      field,
      `${field} is ${value.length} characters long; the limit is ${LIMITS.label}`,
    );
  }
  return value;
}

function messages(value: unknown, field: string): readonly string[] {
  // Elements are checked by the tracker as they are first seen, so a resent transcript is not
  // walked again on every call.
  if (!Array.isArray(value))
    throw new InvalidRequestError(field, `${field} must be an array of strings, got ${shape(value)}`);
  return value as readonly string[];
}

/** The session part of a request: a Phantom `session`, or a key and the two message arrays. */
export type SessionRef = Pick<
  JudgeRequest,
  "session" | "sessionKey" | "userMessages" | "assistantMessages" | "reply"
>;

export type NormalizedSession = Pick<
  NormalizedRequest,
  "sessionKey" | "userMessages" | "assistantMessages" | "facts"
>;

/** The fields a request's two message arrays were read from, as an error names them. */
function messageFields(r: SessionRef): { readonly user: string; readonly assistant: string } {
  return {
    user: r.userMessages !== undefined ? "userMessages" : "session.user_messages",
    assistant: r.assistantMessages !== undefined ? "assistantMessages" : "session.assistant_messages",
  };
}

/**
 * The default of `GuardOptions.maxTranscriptTokens`: twice {@link LARGEST_CONTEXT_TOKENS}, so
 * that a transcript whose characters run shorter than the estimate assumes (code, CJK text) is
 * never refused while some model would take it.
 */
export const DEFAULT_MAX_TRANSCRIPT_TOKENS = 2 * LARGEST_CONTEXT_TOKENS;

/** How large a transcript a request may carry (see `GuardOptions.maxTranscriptTokens`). */
export interface TranscriptLimit {
  /** Estimated tokens; Infinity for no limit. */
  readonly maxTokens: number;
  /** Characters per token of the estimate. */
  readonly charsPerToken: number;
}

const n = (x: number) => x.toLocaleString("en-US");

/**
 * Refuses a transcript larger than any model accepts (its estimate would only inflate the
 * budgets' reservations and the "saved" figures), naming the field that holds most of it, its
 * longest message and the limit. Sizes only: no text is quoted. `chars`, when the caller knows
 * them (the tracker counts only what a resent transcript added), spares a walk of every message
 * when the transcript fits.
 */
export function checkTranscriptSize(
  r: SessionRef,
  s: NormalizedSession,
  limit: TranscriptLimit,
  chars?: number,
): void {
  if (limit.maxTokens === Number.POSITIVE_INFINITY) return;
  if (chars !== undefined && Math.ceil(chars / limit.charsPerToken) <= limit.maxTokens) return;
  const fields = messageFields(r);
  let total = 0;
  let heaviest = { field: fields.assistant, chars: -1 };
  let longest = { at: "", chars: -1 };
  for (const [list, field] of [
    [s.userMessages, fields.user],
    [s.assistantMessages, fields.assistant],
  ] as const) {
    let chars = 0;
    for (let i = 0; i < list.length; i++) {
      const m = list[i];
      if (typeof m !== "string") continue; // the tracker names a non-string element
      chars += m.length;
      if (m.length > longest.chars) longest = { at: `${field}[${i}]`, chars: m.length };
    }
    total += chars;
    if (chars > heaviest.chars) heaviest = { field, chars };
  }
  const tokens = Math.ceil(total / limit.charsPerToken);
  if (tokens <= limit.maxTokens) return;
  throw new InvalidRequestError(
    heaviest.field,
    `${heaviest.field}: the transcript is about ${n(tokens)} tokens (${n(total)} characters at ${limit.charsPerToken} a token), more than any model accepts: the limit is ${n(limit.maxTokens)} tokens (option maxTranscriptTokens, JUDGE_GUARD_MAX_TRANSCRIPT_TOKENS); its longest message is ${longest.at}, ${n(longest.chars)} characters`,
  );
}

/**
 * The fields of a Phantom session the guard reads, whichever casing it came in; unchecked (the
 * guard checks them as it normalizes a request, the sidecar as it parses one).
 */
export function sessionFields(session: PhantomSessionSummary | PhantomSessionData) {
  const s = session as Partial<PhantomSessionSummary> & Partial<PhantomSessionData>;
  return {
    sessionKey: s.session_key ?? s.sessionKey,
    userMessages: s.user_messages ?? s.userMessages,
    assistantMessages: s.assistant_messages ?? s.assistantMessages,
    sessionId: s.session_id ?? s.sessionId,
    toolsUsed: s.tools_used ?? s.toolsUsed,
    outcome: s.outcome,
    costUsd: s.cost_usd ?? s.costUsd,
  };
}

export function normalizeSession(r: SessionRef): NormalizedSession {
  if (r === null || typeof r !== "object") {
    throw new InvalidRequestError("request", `the request must be an object, got ${shape(r)}`);
  }
  if (r.session !== undefined && (r.session === null || typeof r.session !== "object")) {
    throw new InvalidRequestError("session", `session must be an object, got ${shape(r.session)}`);
  }
  const s = r.session && sessionFields(r.session);
  const sessionKey = label(
    r.sessionKey ?? s?.sessionKey,
    r.sessionKey !== undefined || !s ? "sessionKey" : "session.session_key",
  );
  const fields = messageFields(r);
  const userMessages = messages(r.userMessages ?? s?.userMessages ?? [], fields.user);
  const assistantMessages = messages(r.assistantMessages ?? s?.assistantMessages ?? [], fields.assistant);
  let facts = r.reply;
  if (facts === undefined && s !== undefined) {
    const { costUsd, sessionId: sdkSessionId, toolsUsed, outcome } = s;
    if (costUsd !== undefined || sdkSessionId !== undefined || toolsUsed !== undefined) {
      facts = { costUsd, sdkSessionId, toolsUsed, outcome };
    }
  }
  return { sessionKey, userMessages, assistantMessages, facts };
}

export function normalizeRequest(r: JudgeRequest): NormalizedRequest {
  const session = normalizeSession(r);
  if (r.maxTokens !== undefined && (!Number.isInteger(r.maxTokens) || r.maxTokens <= 0)) {
    throw new InvalidRequestError(
      "maxTokens",
      `maxTokens must be a positive integer, got ${shape(r.maxTokens)}`,
    );
  }
  if (
    r.escalation !== undefined &&
    (!Array.isArray(r.escalation) || r.escalation.length > LIMITS.escalation)
  ) {
    throw new InvalidRequestError(
      "escalation",
      `escalation must be a list of at most ${LIMITS.escalation} model ids (the models the call may escalate to), got ${shape(r.escalation)}`,
    );
  }
  return {
    ...session,
    judge: label(r.judge, "judge"),
    model: label(r.model, "model"),
    maxTokens: r.maxTokens,
    escalation: r.escalation?.map((m, i) => label(m, `escalation[${i}]`)),
    variant: r.variant === undefined ? "" : label(r.variant, "variant"),
  };
}
