import { z } from "zod";
import type { PhantomSessionSummary } from "../guard/request.js";
import type { Usage } from "../pricing/prices.js";
import { jsonErrorMessage } from "../util/json-error.js";
import { toUsage, usageSchema } from "../wire/usage.js";

/** Limits that reject absurd input before it reaches the guard. */
export const LIMITS = {
  lineBytes: 64 * 1024 * 1024,
  messages: 200_000,
  tokens: 10_000_000,
  label: 256,
} as const;

/** A field that is absent says so, rather than "expected string, received undefined". */
const missingField: z.core.$ZodErrorMap = (issue) =>
  issue.code === "invalid_type" && issue.input === undefined ? "missing (required)" : undefined;

const label = z.string().min(1).max(LIMITS.label);
const iso = z.string().refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), {
  message: "expected an ISO-8601 time such as 2026-11-20T08:00:00Z",
});

const sessionSchema = z.object({
  session_key: label,
  session_id: z.string().max(LIMITS.label).optional(),
  user_id: z.string().max(LIMITS.label).optional(),
  user_messages: z.array(z.string()).max(LIMITS.messages),
  assistant_messages: z.array(z.string()).max(LIMITS.messages),
  tools_used: z.array(z.string()).optional(),
  files_tracked: z.array(z.string()).optional(),
  // Informational only (the guard never acts on it), so any string goes.
  outcome: z.string().optional(),
  cost_usd: z.number().nonnegative().max(1_000_000).optional(),
  started_at: z.string().optional(),
  ended_at: z.string().optional(),
});

const lineSchema = z.object({
  ts: iso,
  judge: label,
  model: label,
  session: sessionSchema,
  usage: usageSchema(LIMITS.tokens, false, missingField).optional(),
  max_tokens: z.number().int().positive().max(1_000_000).optional(),
  variant: label.optional(),
});

export interface ReplayLine {
  readonly ts: number;
  readonly judge: string;
  readonly model: string;
  readonly session: PhantomSessionSummary;
  readonly usage: Usage | undefined;
  readonly maxTokens: number | undefined;
  readonly variant: string | undefined;
}

export type ParsedLine = { ok: true; line: ReplayLine } | { ok: false; field: string; message: string };

function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? String(p) : `.${String(p)}`;
  return out || "(line)";
}

/**
 * Parses one JSON Lines record; on failure names the field and what was expected. A blank
 * line is invalid too, so that every input line has its decision.
 */
export function parseLine(text: string): ParsedLine {
  if (text.length > LIMITS.lineBytes) {
    return {
      ok: false,
      field: "(line)",
      message: `line is ${text.length} bytes; the limit is ${LIMITS.lineBytes}`,
    };
  }
  if (text.trim() === "") return { ok: false, field: "(line)", message: "empty line" };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    // Say where, never what: V8's message quotes the text, which may be a transcript.
    return { ok: false, field: "(line)", message: jsonErrorMessage(text) };
  }
  const parsed = lineSchema.safeParse(data, { error: missingField });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return { ok: false, field: fieldPath(issue.path), message: issue.message };
  }
  const d = parsed.data;
  return {
    ok: true,
    line: {
      ts: Date.parse(d.ts),
      judge: d.judge,
      model: d.model,
      session: d.session,
      usage: toUsage(d.usage),
      maxTokens: d.max_tokens,
      variant: d.variant,
    },
  };
}
