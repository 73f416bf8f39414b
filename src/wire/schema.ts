import { z } from "zod";
import { LIMITS } from "../domain/limits.js";
import type { PhantomSessionSummary } from "../guard/request.js";
import { usageSchema } from "./usage.js";

/*
 * The snake_case shapes the guard takes from outside: the sidecar's request bodies and the lines
 * of recorded traffic replay reads. Each shape is defined here once, from the limits in
 * `domain/limits.ts`; the types the library takes (`PhantomSessionSummary`, in `guard/request.ts`)
 * must agree with them, which the type check below enforces.
 */

/** A field that is absent says so, rather than "expected string, received undefined". */
export const missingField: z.core.$ZodErrorMap = (issue) =>
  issue.code === "invalid_type" && issue.input === undefined ? "missing (required)" : undefined;

/** A name that must be given: session key, judge kind, model id, variant. */
const label = z.string().min(1).max(LIMITS.label);
/** A short text that may be empty: an SDK session id, an outcome, a time stamp. */
const text = z.string().max(LIMITS.label);
const messages = z.array(z.string()).max(LIMITS.messages);
const names = z.array(text).max(LIMITS.names);
const costUsd = z.number().nonnegative().max(LIMITS.costUsd);
const maxTokens = z.number().int().positive().max(LIMITS.maxTokens);

/** Phantom's `SessionSummary` (evolution engine), field names verbatim. */
export const sessionSummary = z.object({
  session_id: text.optional(),
  session_key: label,
  user_id: text.optional(),
  user_messages: messages,
  assistant_messages: messages,
  tools_used: names.optional(),
  // Not read by the guard: bounded by the body (or the line) alone.
  files_tracked: z.array(z.string()).optional(),
  // Informational only (the guard never acts on it), so any label goes.
  outcome: text.optional(),
  cost_usd: costUsd.optional(),
  started_at: text.optional(),
  ended_at: text.optional(),
});

/** Facts about the latest reply (the library's `ReplyFacts`). */
export const replyFacts = z.object({
  cost_usd: costUsd.optional(),
  session_id: text.nullable().optional(),
  duration_ms: z.number().nonnegative().max(LIMITS.durationMs).optional(),
  handled: z.boolean().optional(),
  tools_used: names.optional(),
  outcome: text.optional(),
});

/** One judge call: what it is and how much it may write. */
const judgeCall = {
  judge: label,
  model: label,
  max_tokens: maxTokens.optional(),
  variant: label.optional(),
};

/** The transcript: a Phantom `session`, or a key and the two message arrays. */
const sessionRef = {
  session: sessionSummary.optional(),
  session_key: label.optional(),
  user_messages: messages.optional(),
  assistant_messages: messages.optional(),
  reply: replyFacts.optional(),
};

const hasSession = (b: { session?: unknown; session_key?: unknown }) =>
  b.session !== undefined || b.session_key !== undefined;
const noSession = {
  message: "give session (a SessionSummary) or session_key with user_messages and assistant_messages",
  path: ["session"],
};

/** `POST /v1/admit`: a judge request. */
export const admitBody = z
  .object({
    ...judgeCall,
    /** The models the call may escalate to, in order ([] when it never escalates). */
    escalation: z.array(label).max(LIMITS.escalation).optional(),
    /** Ask for a substitute verdict with a skip: `gate` answers Phantom's gate "do not evolve". */
    substitute: z.enum(["gate"]).optional(),
    /** The longest the client will wait for an answer: admission does not wait beyond it. */
    wait_ms: z.number().int().nonnegative().max(LIMITS.waitMs).optional(),
    ...sessionRef,
  })
  .strict()
  .refine(hasSession, noSession);

/** `POST /v1/assess`: a session, and the judge calls a skipped cycle would have made. */
export const assessBody = z
  .object({ ...sessionRef, judges: z.array(z.object(judgeCall).strict()).max(LIMITS.judges).optional() })
  .strict()
  .refine(hasSession, noSession);

/** `POST /v1/settle`: what an admitted call cost. */
export const settleBody = z
  .object({
    reservation_id: z.string().min(1).max(LIMITS.reservationId),
    ok: z.boolean(),
    usage: usageSchema(true, missingField).optional(),
    cost_usd: costUsd.optional(),
    model: label.optional(),
  })
  .strict();

const iso = z.string().refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), {
  message: "expected an ISO-8601 time such as 2026-11-20T08:00:00Z",
});

/** A line of recorded traffic (`judge-guard replay`): a judge call, when, and what it cost. */
export const replayLine = z.object({
  ts: iso,
  ...judgeCall,
  session: sessionSummary,
  usage: usageSchema(false, missingField).optional(),
});

export type AdmitBody = z.infer<typeof admitBody>;
export type AssessBody = z.infer<typeof assessBody>;
export type SettleBody = z.infer<typeof settleBody>;
export type ReplyWire = z.infer<typeof replyFacts>;

/** Arrays read-only too: the library never changes what it is given. */
type ReadOnly<T> = { readonly [K in keyof T]: ReadOnlyArray<T[K]> };
type ReadOnlyArray<V> = V extends readonly (infer E)[] ? readonly E[] : V;

/** Phantom's `SessionSummary` as the guard takes it (`guard/request.ts`), and the shape read here must agree. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Agrees<T extends true> = T;
export type SessionSummaryAgrees = Agrees<
  Same<ReadOnly<z.infer<typeof sessionSummary>>, PhantomSessionSummary>
>;
