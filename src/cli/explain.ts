import { fromEnv } from "../config/env.js";
import { REASON_TEXT } from "../detection/reasons.js";
import type { EvidenceStep } from "../detection/window.js";
import { DEFAULTS } from "../guard/options.js";
import type { ExplainedReply } from "../replay/replay.js";
import { type KeyHistory, keyHistory } from "../report/episodes.js";
import { ledgerName } from "../store/open.js";
import { LedgerReadError } from "../store/reader.js";
import { printable } from "../util/printable.js";

export interface ExplainCommandOptions {
  readonly db?: string;
  readonly json?: boolean;
}

const signed = (w: number | "reset"): string => (w === "reset" ? "reset" : w > 0 ? `+${w}` : String(w));

/**
 * Reply-by-reply evidence as a table: what each reply matched, what it weighed and why, the
 * score after it, and what the guard did. Fingerprints and lengths only: the operator has the
 * transcript and finds each reply by its number.
 */
export function renderSteps(steps: readonly (EvidenceStep | ExplainedReply)[]): string {
  const withLines = steps.some((s) => "line" in s);
  const header = [
    "reply",
    ...(withLines ? ["line"] : []),
    "chars",
    "fingerprint",
    "match",
    "weight",
    "score",
    withLines ? "decision" : "stuck",
    "why",
  ];
  const rows = steps.map((s) => {
    const decision =
      "line" in s ? (s.decision === "skipped" ? `skipped (${s.reason})` : "judged") : s.stuck ? "yes" : "no";
    const match = s.match === "new" ? "new" : `${s.match} of ${s.matchedTurn}`;
    return [
      String(s.turn),
      ...("line" in s ? [String(s.line)] : []),
      String(s.chars),
      s.fingerprint,
      match,
      signed(s.weight),
      `${s.score}/${s.threshold}`,
      decision,
      s.reasons.map((r) => REASON_TEXT[r] ?? r).join("; "),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

const HOW_TO_READ =
  "score: evidence so far / the threshold (JUDGE_GUARD_REPEAT_THRESHOLD - 1); a key is stuck while the score is at the threshold and its latest reply repeats an earlier one.\n";

/** `judge-guard replay FILE --explain KEY`: the key's replies as the replay saw them. */
export function renderExplainedReplay(sessionKey: string, replies: readonly ExplainedReply[]): string {
  const key = printable(sessionKey);
  if (replies.length === 0) return `\nexplain ${key}: no line of the replay has this session key\n`;
  return `\nexplain ${key}, reply by reply:\n${renderSteps(replies)}${HOW_TO_READ}`;
}

export function renderHistory(ledger: string, h: KeyHistory): string {
  const out: string[] = [];
  const n = h.episodes.length;
  out.push(
    `${printable(h.sessionKey)} in ${ledger}: ${n === 0 ? "no stuck episode recorded" : `${n} stuck episode${n === 1 ? "" : "s"}`}${h.stuck ? "; stuck now" : ""}`,
  );
  for (const e of h.episodes) {
    const until = e.endedMs === null ? "ongoing" : `ended ${new Date(e.endedMs).toISOString()}`;
    out.push(
      "",
      `episode ${e.id}: opened ${new Date(e.startedMs).toISOString()} at reply ${e.detectedTurn} (${until}), evidence ${e.evidence}, canned reply ${e.fingerprint}`,
    );
    if (e.trail === null || e.trail.length === 0)
      out.push("  (no evidence recorded: the episode predates ledger schema v5)");
    else out.push(renderSteps(e.trail).trimEnd());
  }
  if (n > 0) out.push("", HOW_TO_READ.trimEnd());
  else
    out.push(
      "Judging was never stopped for this key as stuck. To see why, replay its traffic: judge-guard replay FILE --explain KEY",
    );
  return `${out.join("\n")}\n`;
}

/** `judge-guard explain KEY`: exit 0, or 1 when the ledger cannot be read. */
export function explainCommand(sessionKey: string, o: ExplainCommandOptions): number {
  const env = fromEnv(process.env);
  const ledger = o.db ?? (typeof env.ledger === "string" ? env.ledger : DEFAULTS.ledger);
  let h: KeyHistory;
  try {
    h = keyHistory(ledger, sessionKey);
  } catch (e) {
    if (e instanceof LedgerReadError) {
      process.stderr.write(`judge-guard: explain: ${printable(e.message)}\n`);
      return 1;
    }
    throw e;
  }
  const shown = ledgerName(ledger);
  process.stdout.write(
    o.json ? `${JSON.stringify({ ledger: shown, ...h }, null, 2)}\n` : renderHistory(shown, h),
  );
  return 0;
}
