import { z } from "zod";
import type { AssessOptions } from "../guard/guard.js";
import type { JudgeRequest } from "../guard/request.js";
import { usageSchema } from "../wire/usage.js";

/** Size limits on what a client may send. */
export const LIMITS = {
  bodyBytes: 8 * 1024 * 1024,
  label: 256,
  messages: 100_000,
  messageChars: 1_000_000,
  /** Judges named in one assessment. */
  judges: 64,
} as const;

const label = z.string().min(1).max(LIMITS.label);
const message = z.string().max(LIMITS.messageChars, `at most ${LIMITS.messageChars} characters`);
const messages = z.array(message).max(LIMITS.messages);

const session = z.object({
  session_key: label,
  session_id: z.string().max(LIMITS.label).optional(),
  user_messages: messages,
  assistant_messages: messages,
  tools_used: z.array(z.string().max(LIMITS.label)).max(1000).optional(),
  outcome: z.string().max(64).optional(),
  cost_usd: z.number().nonnegative().max(1e6).optional(),
});

const reply = z.object({
  cost_usd: z.number().nonnegative().max(1e6).optional(),
  session_id: z.string().max(LIMITS.label).nullable().optional(),
  duration_ms: z.number().nonnegative().max(1e9).optional(),
  handled: z.boolean().optional(),
  tools_used: z.array(z.string().max(LIMITS.label)).max(1000).optional(),
  outcome: z.string().max(64).optional(),
});

const sessionRef = {
  session: session.optional(),
  session_key: label.optional(),
  user_messages: messages.optional(),
  assistant_messages: messages.optional(),
  reply: reply.optional(),
};

export const admitBody = z
  .object({
    judge: label,
    model: label,
    max_tokens: z.number().int().positive().max(1_000_000).optional(),
    /** The models the call may escalate to, in order ([] when it never escalates). */
    escalation: z.array(label).max(8).optional(),
    variant: label.optional(),
    /** Ask for a substitute verdict with a skip: `gate` answers Phantom's gate "do not evolve". */
    substitute: z.enum(["gate"]).optional(),
    /** The longest the client will wait for an answer: admission does not wait beyond it. */
    wait_ms: z.number().int().nonnegative().max(600_000).optional(),
    ...sessionRef,
  })
  .strict()
  .refine((b) => b.session !== undefined || b.session_key !== undefined, {
    message: "give session (a SessionSummary) or session_key with user_messages and assistant_messages",
    path: ["session"],
  });

/** The judge calls a skipped cycle would have made, recorded as skipped decisions. */
const assessedJudge = z
  .object({
    judge: label,
    model: label,
    variant: label.optional(),
    max_tokens: z.number().int().positive().max(1_000_000).optional(),
  })
  .strict();

export const assessBody = z
  .object({ ...sessionRef, judges: z.array(assessedJudge).max(LIMITS.judges).optional() })
  .strict()
  .refine((b) => b.session !== undefined || b.session_key !== undefined, {
    message: "give session (a SessionSummary) or session_key with user_messages and assistant_messages",
    path: ["session"],
  });

export const usageBody = usageSchema(100_000_000, true);

export const settleBody = z
  .object({
    reservation_id: z.string().min(1).max(64),
    ok: z.boolean(),
    usage: usageBody.optional(),
    cost_usd: z.number().nonnegative().max(1e6).optional(),
    model: label.optional(),
  })
  .strict();

export type AdmitBody = z.infer<typeof admitBody>;
export type AssessBody = z.infer<typeof assessBody>;

/** The wire form (snake_case) of a judge request, to the guard's own. */
export function toRequest(b: Partial<AdmitBody> & Omit<AssessBody, "judges">): JudgeRequest {
  const r = b.reply;
  return {
    judge: b.judge ?? "assess",
    model: b.model ?? "none",
    ...(b.session && { session: b.session }),
    ...(b.session_key !== undefined && { sessionKey: b.session_key }),
    ...(b.user_messages && { userMessages: b.user_messages }),
    ...(b.assistant_messages && { assistantMessages: b.assistant_messages }),
    ...(r && {
      reply: {
        costUsd: r.cost_usd,
        sdkSessionId: r.session_id,
        durationMs: r.duration_ms,
        handled: r.handled,
        toolsUsed: r.tools_used,
        outcome: r.outcome,
      },
    }),
    ...(b.max_tokens !== undefined && { maxTokens: b.max_tokens }),
    ...(b.escalation !== undefined && { escalation: b.escalation }),
    ...(b.variant !== undefined && { variant: b.variant }),
  };
}

/** The judges of an assessment, to the guard's own. */
export function toJudges(b: AssessBody): AssessOptions {
  if (b.judges === undefined) return {};
  return {
    judges: b.judges.map((j) => ({
      judge: j.judge,
      model: j.model,
      ...(j.variant !== undefined && { variant: j.variant }),
      ...(j.max_tokens !== undefined && { maxTokens: j.max_tokens }),
    })),
  };
}
