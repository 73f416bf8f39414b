/**
 * The library's camelCase objects to the wire's snake_case shapes (`schema.ts`) and back: what
 * the client sends, the sidecar reads, and the other way round. No zod here, and no import of
 * `schema.ts` but its types: the client, which Phantom loads under Bun, maps with these.
 */

import type { ReplyFacts } from "../detection/tracker.js";
import type { SkipReason } from "../domain/decision.js";
import { type SkipCode, type SkipDetails, skipError } from "../errors.js";
import type { Assessment, AssessOptions, SessionState, Settlement, Ticket } from "../guard/guard.js";
import { type SkippedOutcome, skipReasonOf } from "../guard/outcome.js";
import {
  type JudgeRequest,
  type PhantomSessionData,
  type PhantomSessionSummary,
  type SessionRef,
  sessionFields,
} from "../guard/request.js";
import type { Usage } from "../pricing/prices.js";
import { type ReportedCost, readUsage } from "../pricing/usage.js";
import type { AdmitBody, AssessBody, ReplyWire, SettleBody } from "./schema.js";

/**
 * Each field of a request and its name on the wire, for errors the guard raises about a request
 * the sidecar took (`user_messages`, not `userMessages`). A field added to `JudgeRequest` without
 * its wire name does not compile.
 */
const REQUEST_NAMES = {
  judge: "judge",
  model: "model",
  session: "session",
  sessionKey: "session_key",
  userMessages: "user_messages",
  assistantMessages: "assistant_messages",
  reply: "reply",
  maxTokens: "max_tokens",
  escalation: "escalation",
  variant: "variant",
} as const satisfies { readonly [K in keyof JudgeRequest]-?: keyof AdmitBody };

const RENAMED = Object.entries(REQUEST_NAMES).filter(([field, wire]) => field !== wire);
const RENAMED_PATTERN = new RegExp(`\\b(${RENAMED.map(([field]) => field).join("|")})\\b`, "g");
const WIRE_NAME: Readonly<Record<string, string>> = Object.fromEntries(RENAMED);

/** A field name of a request (or a message naming fields) as the wire spells it. */
export function fieldsOnTheWire(text: string): string {
  return text.replace(RENAMED_PATTERN, (m) => WIRE_NAME[m] ?? m);
}

/** A Phantom session in the wire's form (its `SessionSummary`), whichever casing came in: the fields the guard reads. */
export function sessionToWire(session: PhantomSessionSummary | PhantomSessionData) {
  const s = sessionFields(session);
  return {
    session_key: s.sessionKey,
    user_messages: s.userMessages,
    assistant_messages: s.assistantMessages,
    session_id: s.sessionId,
    tools_used: s.toolsUsed,
    outcome: s.outcome,
    cost_usd: s.costUsd,
  };
}

export const replyToWire = (f: ReplyFacts) => ({
  cost_usd: f.costUsd,
  session_id: f.sdkSessionId,
  duration_ms: f.durationMs,
  handled: f.handled,
  tools_used: f.toolsUsed,
  outcome: f.outcome,
});

export const replyFromWire = (w: ReplyWire): ReplyFacts => ({
  costUsd: w.cost_usd,
  sdkSessionId: w.session_id,
  durationMs: w.duration_ms,
  handled: w.handled,
  toolsUsed: w.tools_used,
  outcome: w.outcome,
});

/**
 * A judge request (or the session part of one) as the client sends it. Fields left out stay out
 * (JSON drops `undefined`); so does a `null` session, transcript or reply, as the guard reads them.
 */
export function requestToWire(r: SessionRef & Partial<JudgeRequest>) {
  return {
    judge: r.judge,
    model: r.model,
    session: r.session ? sessionToWire(r.session) : undefined,
    session_key: r.sessionKey,
    user_messages: r.userMessages ?? undefined,
    assistant_messages: r.assistantMessages ?? undefined,
    reply: r.reply ? replyToWire(r.reply) : undefined,
    max_tokens: r.maxTokens,
    escalation: r.escalation,
    variant: r.variant,
  };
}

/** A request the sidecar parsed, to the guard's own; an assessment's has no judge of its own. */
export function requestFromWire(b: Partial<AdmitBody> & Omit<AssessBody, "judges">): JudgeRequest {
  return {
    judge: b.judge ?? "assess",
    model: b.model ?? "none",
    session: b.session,
    sessionKey: b.session_key,
    userMessages: b.user_messages,
    assistantMessages: b.assistant_messages,
    reply: b.reply && replyFromWire(b.reply),
    maxTokens: b.max_tokens,
    escalation: b.escalation,
    variant: b.variant,
  };
}

/** The judges of an assessment (the calls a skipped cycle will not make). */
export const judgesToWire = (o: AssessOptions) =>
  o.judges?.map((j) => ({ judge: j.judge, model: j.model, variant: j.variant, max_tokens: j.maxTokens }));

export function judgesFromWire(b: AssessBody): AssessOptions {
  if (b.judges === undefined) return {};
  return {
    judges: b.judges.map((j) => ({
      judge: j.judge,
      model: j.model,
      variant: j.variant,
      maxTokens: j.max_tokens,
    })),
  };
}

/** Usage in Anthropic's shape, cache writes split by lifetime (they are priced differently). */
export const usageToWire = (u: Usage) => ({
  input_tokens: u.inputTokens,
  output_tokens: u.outputTokens,
  cache_read_input_tokens: u.cacheReadTokens ?? 0,
  cache_creation_input_tokens: (u.cacheWriteTokens ?? 0) + (u.cacheWrite1hTokens ?? 0),
  cache_creation: {
    ephemeral_5m_input_tokens: u.cacheWriteTokens ?? 0,
    ephemeral_1h_input_tokens: u.cacheWrite1hTokens ?? 0,
  },
});

/** A parsed usage object (any provider's shape), read as the guard reads a judge's result in process. */
export const usageFromWire = (u: unknown): Usage | undefined =>
  u === undefined ? undefined : readUsage(u)?.usage;

/** `POST /v1/settle`: what an admitted call cost. */
export const settlementToWire = (reservationId: string, ok: boolean, reported: ReportedCost | undefined) => ({
  reservation_id: reservationId,
  ok,
  usage: reported?.usage && usageToWire(reported.usage),
  cost_usd: reported?.costUsd,
  model: reported?.model || undefined,
});

export const settlementFromWire = (b: SettleBody): Settlement => ({
  ok: b.ok,
  usage: usageFromWire(b.usage),
  costUsd: b.cost_usd,
  model: b.model,
});

/** The sidecar's answer to `POST /v1/admit`. */
export type AdmissionWire =
  | {
      readonly decision: "judge";
      readonly reservation_id: string;
      readonly reserved_usd: number;
      readonly shadow_reason: SkipReason | null;
    }
  | {
      readonly decision: "skip";
      readonly reason: SkipReason;
      readonly code: SkipCode;
      readonly saved_usd: number;
      readonly message: string;
      readonly details: SkipDetails;
      /** A gate must not get an error (its errors fail towards running evolution). */
      readonly substitute?: { readonly evolve: false; readonly reason: string };
    };

/** `substitute: "gate"` asks for the verdict Phantom's gate takes in place of a skip. */
export function admissionToWire(out: Ticket | SkippedOutcome, substitute?: "gate"): AdmissionWire {
  if (out.status === "admitted") {
    return {
      decision: "judge",
      reservation_id: out.reservationId,
      reserved_usd: out.reservedUsd,
      shadow_reason: out.shadowReason,
    };
  }
  return {
    decision: "skip",
    reason: out.reason,
    code: out.code,
    saved_usd: out.savedUsd,
    message: out.error.message,
    details: out.error.details,
    ...(substitute === "gate" && { substitute: { evolve: false, reason: `judge-guard: ${out.reason}` } }),
  };
}

/** A skip the sidecar answered, as the in-process guard returns it (its error rebuilt from the code). */
export function skippedFromWire(w: Extract<AdmissionWire, { decision: "skip" }>): SkippedOutcome {
  const code = w.code as SkipCode;
  return {
    status: "skipped",
    reason: skipReasonOf(code),
    code,
    error: skipError(code, w.details ?? ({} as SkipDetails)),
    savedUsd: w.saved_usd ?? 0,
  };
}

/** The sidecar's answer to `POST /v1/assess`. */
export interface AssessmentWire {
  readonly stuck: boolean;
  readonly skip: boolean;
  readonly episode_id: string | null;
  readonly fingerprint: string | null;
  readonly repeats: number;
}

export const assessmentToWire = (v: Assessment): AssessmentWire => ({
  stuck: v.stuck,
  skip: v.skip,
  episode_id: v.episodeId,
  fingerprint: v.fingerprint,
  repeats: v.repeats,
});

export const assessmentFromWire = (w: AssessmentWire): Assessment => ({
  stuck: w.stuck,
  skip: w.skip,
  episodeId: w.episode_id,
  fingerprint: w.fingerprint,
  repeats: w.repeats,
});

/** The sidecar's answer about a key (`GET /v1/sessions/:key`); a cap of none is null (JSON has no Infinity). */
export interface SessionStateWire {
  readonly session_key: string;
  readonly stuck: boolean;
  readonly episode_id: string | null;
  readonly fingerprint: string | null;
  readonly repeats: number;
  readonly spent_usd: number;
  readonly calls: number;
  readonly budget_usd: number | null;
  readonly max_calls: number | null;
}

export const sessionStateToWire = (s: SessionState): SessionStateWire => ({
  session_key: s.sessionKey,
  stuck: s.stuck,
  episode_id: s.episodeId,
  fingerprint: s.fingerprint,
  repeats: s.repeats,
  spent_usd: s.spentUsd,
  calls: s.calls,
  budget_usd: Number.isFinite(s.budgetUsd) ? s.budgetUsd : null,
  max_calls: Number.isFinite(s.maxCalls) ? s.maxCalls : null,
});

export const sessionStateFromWire = (w: SessionStateWire): SessionState => ({
  sessionKey: w.session_key,
  stuck: w.stuck,
  episodeId: w.episode_id,
  fingerprint: w.fingerprint,
  repeats: w.repeats,
  spentUsd: w.spent_usd,
  calls: w.calls,
  budgetUsd: w.budget_usd ?? Number.POSITIVE_INFINITY,
  maxCalls: w.max_calls ?? Number.POSITIVE_INFINITY,
});
