import { LIMITS } from "../domain/limits.js";
import type { PhantomSessionSummary } from "../guard/request.js";
import type { Usage } from "../pricing/prices.js";
import { jsonErrorMessage } from "../util/json-error.js";
import { usageFromWire } from "../wire/map.js";
import { missingField, replayLine } from "../wire/schema.js";

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
  const parsed = replayLine.safeParse(data, { error: missingField });
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
      usage: usageFromWire(d.usage),
      maxTokens: d.max_tokens,
      variant: d.variant,
    },
  };
}
