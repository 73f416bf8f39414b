import type { AssessOptions } from "../guard/guard.js";
import type { JudgeRequest } from "../guard/request.js";
import type { AdmitBody, AssessBody } from "../wire/schema.js";

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
