import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import type { EvidenceStep } from "../detection/window.js";
import type { SkipReason } from "../domain/decision.js";
import { InvalidRequestError } from "../errors.js";
import { Guard } from "../guard/guard.js";
import { DEFAULTS, type GuardOptions } from "../guard/options.js";
import type { GuardEvent } from "../signals/types.js";
import { roundUsd } from "../util/money.js";
import { parseLine } from "./line.js";

/** One line of `--decisions` output, in input order. */
export interface ReplayDecision {
  readonly line: number;
  readonly session_key: string | null;
  readonly judge: string | null;
  readonly decision: "judged" | "skipped" | "invalid";
  readonly reason: SkipReason | null;
  readonly cost_usd: number;
  readonly saved_usd: number;
}

export interface ReplayStuckSession {
  readonly session_key: string;
  readonly episode_id: string;
  /** Input line at which the guard first skipped the key for this episode. */
  readonly detected_line: number;
  readonly fingerprint: string;
  /** Repeats of the canned reply when detected. */
  readonly repeats: number;
  readonly skipped_calls: number;
  readonly saved_usd: number;
}

export interface ReplayInvalidLine {
  readonly line: number;
  readonly field: string;
  readonly message: string;
}

export interface ReplaySummary {
  readonly lines: number;
  readonly judged: number;
  readonly skipped: number;
  readonly skipped_by_reason: Record<string, number>;
  /** Shadow mode: calls judged that enforce mode would have skipped, by reason. */
  readonly would_skip_by_reason: Record<string, number>;
  readonly invalid: number;
  readonly spent_usd: number;
  readonly saved_usd: number;
  /** What every valid line would have cost with no guard. */
  readonly unguarded_usd: number;
  readonly stuck_sessions: ReplayStuckSession[];
  /** Signals to force a fresh session: one per stuck episode (budget alerts are not counted here). */
  readonly signals: number;
  /** Budget alerts sent (a cap near or reached), apart from the signals. */
  readonly budget_alerts: number;
  readonly mode: "enforce" | "shadow";
  readonly ledger: string;
}

/** One reply of an explained key: the evidence it added, and the first line that carried it. */
export interface ExplainedReply extends EvidenceStep {
  readonly line: number;
  /** What the guard did with that line. */
  readonly decision: "judged" | "skipped";
  readonly reason: SkipReason | null;
}

export interface ReplayHooks {
  /** Called for every input line, in order. */
  onDecision?(d: ReplayDecision): void;
  onInvalid?(bad: ReplayInvalidLine): void;
  /** Collect the evidence of this session key, reply by reply, for `replay --explain KEY`. */
  explain?: { readonly sessionKey: string; onReply(r: ExplainedReply): void };
}

/** Opens a JSON Lines file, gzip-compressed or not ("-" for standard input). */
export async function openLines(
  path: string,
): Promise<{ lines: AsyncIterable<string>; size: number; bytesRead: () => number }> {
  if (path === "-")
    return {
      lines: createInterface({ input: process.stdin, crlfDelay: Infinity }),
      size: 0,
      bytesRead: () => 0,
    };
  const fh = await open(path, "r");
  const head = Buffer.alloc(2);
  let size: number;
  try {
    await fh.read(head, 0, 2, 0);
    size = (await fh.stat()).size;
  } finally {
    await fh.close();
  }
  const file = createReadStream(path);
  let read = 0;
  file.on("data", (chunk) => {
    read += chunk.length;
  });
  let input: Readable = file;
  if (head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = createGunzip();
    file.on("error", (e) => gunzip.destroy(e));
    input = file.pipe(gunzip);
  }
  return { lines: createInterface({ input, crlfDelay: Infinity }), size, bytesRead: () => read };
}

/**
 * Replays recorded judge traffic through a guard: what would it have done? Each line's `ts` is
 * the guard's clock; a line's `usage` is what the call really cost, used to settle a judged call
 * and as the saving of a skipped one. Lines are processed in order, one at a time.
 */
export async function replay(
  lines: AsyncIterable<string>,
  options: GuardOptions & { ledger: string },
  hooks: ReplayHooks = {},
): Promise<ReplaySummary> {
  let now = 0;
  let signals = 0;
  let alerts = 0;
  const count = (event: GuardEvent) => {
    if (event.type === "stuck_session") signals++;
    else alerts++;
  };
  const guard = new Guard({
    ...options,
    clock: { now: () => now },
    signals: [...(options.signals ?? []), { name: "replay", send: count }],
  });
  // A replay's answer is only as good as its ledger: no point replaying into one that fails.
  const fault = guard.ledgerFault;
  if (fault !== null) {
    await guard.close();
    throw fault;
  }
  const byReason: Record<string, number> = {};
  const wouldSkip: Record<string, number> = {};
  const episodes = new Map<string, ReplayStuckSession & { skipped_calls: number; saved_usd: number }>();
  let lastStep: EvidenceStep | undefined;
  let n = 0;
  let judged = 0;
  let skipped = 0;
  let invalid = 0;
  let spent = 0;
  let saved = 0;
  /** A line the guard could not take: said, and given its decision, so every line has one. */
  const invalidLine = (field: string, message: string) => {
    invalid++;
    hooks.onInvalid?.({ line: n, field, message });
    hooks.onDecision?.({
      line: n,
      session_key: null,
      judge: null,
      decision: "invalid",
      reason: null,
      cost_usd: 0,
      saved_usd: 0,
    });
  };
  try {
    for await (const text of lines) {
      n++;
      const parsed = parseLine(text);
      if (!parsed.ok) {
        invalidLine(parsed.field, parsed.message);
        continue;
      }
      const l = parsed.line;
      now = l.ts;
      const usage = l.usage;
      let outcome: Awaited<ReturnType<typeof guard.run<{ usage: typeof usage }>>>;
      try {
        outcome = await guard.run(
          { judge: l.judge, model: l.model, session: l.session, maxTokens: l.maxTokens, variant: l.variant },
          () => ({ usage }),
          usage ? { knownUsage: usage } : {},
        );
      } catch (e) {
        // A line the schema takes that the guard refuses (a transcript larger than any model accepts).
        if (!(e instanceof InvalidRequestError)) throw e;
        invalidLine(e.field, e.message.replace(`${e.field}: `, ""));
        continue;
      }
      const key = l.session.session_key;
      let d: ReplayDecision;
      if (outcome.status === "judged") {
        judged++;
        spent += outcome.costUsd;
        const would = outcome.shadowReason;
        if (would !== null) wouldSkip[would] = (wouldSkip[would] ?? 0) + 1;
        d = {
          line: n,
          session_key: key,
          judge: l.judge,
          decision: "judged",
          reason: would,
          cost_usd: roundUsd(outcome.costUsd),
          saved_usd: 0,
        };
      } else {
        skipped++;
        const reason: SkipReason = outcome.status === "reused" ? "duplicate" : outcome.reason;
        byReason[reason] = (byReason[reason] ?? 0) + 1;
        saved += outcome.savedUsd;
        d = {
          line: n,
          session_key: key,
          judge: l.judge,
          decision: "skipped",
          reason,
          cost_usd: 0,
          saved_usd: roundUsd(outcome.savedUsd),
        };
        if (outcome.status === "skipped" && outcome.reason === "stuck_session") {
          const det = outcome.error.details;
          const id = det.episodeId ?? `${key}`;
          let ep = episodes.get(id);
          if (!ep) {
            ep = {
              session_key: key,
              episode_id: id,
              detected_line: n,
              fingerprint: det.fingerprint ?? "",
              repeats: det.repeats ?? 0,
              skipped_calls: 0,
              saved_usd: 0,
            };
            episodes.set(id, ep);
          }
          ep.skipped_calls++;
          ep.saved_usd += outcome.savedUsd;
        }
      }
      hooks.onDecision?.(d);
      if (hooks.explain !== undefined && key === hooks.explain.sessionKey && d.decision !== "invalid") {
        // The steps this line added: those after the last one reported (all of them when the
        // key's evidence started over).
        const trail = guard.explain(key);
        const same = (a: EvidenceStep, b: EvidenceStep) =>
          a.turn === b.turn && a.fingerprint === b.fingerprint && a.score === b.score && a.match === b.match;
        const from = lastStep === undefined ? 0 : trail.findLastIndex((x) => same(x, lastStep!)) + 1;
        for (const step of trail.slice(from))
          hooks.explain.onReply({ ...step, line: n, decision: d.decision, reason: d.reason });
        lastStep = trail.at(-1) ?? lastStep;
      }
    }
  } finally {
    await guard.close();
  }
  return {
    lines: n,
    judged,
    skipped,
    skipped_by_reason: byReason,
    would_skip_by_reason: wouldSkip,
    invalid,
    spent_usd: roundUsd(spent),
    saved_usd: roundUsd(saved),
    unguarded_usd: roundUsd(spent + saved),
    stuck_sessions: [...episodes.values()].map((e) => ({ ...e, saved_usd: roundUsd(e.saved_usd) })),
    signals,
    budget_alerts: alerts,
    mode: options.mode ?? DEFAULTS.mode,
    ledger: options.ledger,
  };
}
