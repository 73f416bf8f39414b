import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fromEnv } from "../config/env.js";
import type { LogLevel } from "../log/logger.js";
import { type ExplainedReply, openLines, type ReplaySummary, replay } from "../replay/replay.js";
import { printable } from "../util/printable.js";
import { fsReason, UsageError } from "./errors.js";
import { renderExplainedReplay } from "./explain.js";
import { count, ProgressBar, percent, plural, usdColumn } from "./format.js";
import { createCliLogger } from "./log.js";

export interface ReplayCommandOptions {
  readonly db?: string;
  readonly decisions?: string;
  readonly json?: boolean;
  readonly progress?: boolean;
  readonly explain?: string;
}

const MAX_INVALID_SHOWN = 100;

/** What stat says about a path: "folder", "file" (anything else that exists) or an error code. */
function kindOf(path: string): "folder" | "file" | string {
  try {
    return statSync(path).isDirectory() ? "folder" : "file";
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

/**
 * Checks `--db PATH` before anything opens it: its folder must exist (it is not created) and
 * PATH must not be a folder. Throws a one-line UsageError naming the option, the path and the fault.
 */
export function checkDbPath(path: string): void {
  if (path === ":memory:") return;
  const bad = (what: string): never => {
    throw new UsageError(`--db ${path}: ${what}`);
  };
  if (path === "") throw new UsageError("--db: the path is empty; give the path of a SQLite file");
  const full = resolve(path);
  const self = kindOf(full);
  if (self === "folder") bad("is a folder; give the path of a SQLite file");
  if (self === "file") return;
  const parent = dirname(full);
  const folder = kindOf(parent);
  if (folder === "folder") {
    if (self !== "ENOENT") bad(`cannot be used (${self})`);
    return;
  }
  if (folder === "file") bad(`${parent} is not a folder`);
  if (folder === "ENOENT") bad(`the folder ${parent} does not exist (create it first)`);
  if (folder === "ENOTDIR") bad(`the folder ${parent} does not exist: part of it is a file, not a folder`);
  bad(`cannot use the folder ${parent} (${folder})`);
}

/** `judge-guard replay FILE`: returns the process exit code. */
export async function replayCommand(file: string, opts: ReplayCommandOptions): Promise<number> {
  const options = fromEnv(process.env);
  if (opts.db !== undefined) checkDbPath(opts.db);
  let input: Awaited<ReturnType<typeof openLines>>;
  try {
    input = await openLines(file);
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${fsReason(e)}`);
  }
  const tempDir = opts.db ? undefined : mkdtempSync(join(tmpdir(), "judge-guard-replay-"));
  const ledger = opts.db ?? join(tempDir!, "replay.db");

  let decisions: number | undefined;
  try {
    decisions = opts.decisions ? openSync(opts.decisions, "w") : undefined;
  } catch (e) {
    throw new UsageError(`cannot write --decisions ${opts.decisions}: ${fsReason(e)}`);
  }
  let buffered = "";
  const flush = () => {
    if (decisions !== undefined && buffered !== "") writeSync(decisions, buffered);
    buffered = "";
  };
  const bar =
    opts.progress !== false && process.stderr.isTTY ? new ProgressBar(process.stderr, "replay") : undefined;
  // The guard's logs as lines for people, not JSON, and never drawn over the progress bar.
  const level: LogLevel = typeof options.logger === "string" ? options.logger : "warn";
  const logger = createCliLogger(level, () => bar?.clear());
  let invalidShown = 0;
  let invalidTotal = 0;
  let summary: ReplaySummary;
  let linesSeen = 0;
  const explained: ExplainedReply[] = [];
  try {
    summary = await replay(
      input.lines,
      { ...options, ledger, logger },
      {
        onDecision: (d) => {
          linesSeen = d.line;
          if (decisions !== undefined) {
            buffered += `${JSON.stringify(d)}\n`;
            if (buffered.length > 65_536) flush();
          }
          bar?.update(input.bytesRead(), input.size, `line ${count(linesSeen)}`);
        },
        onInvalid: (bad) => {
          invalidTotal++;
          if (invalidShown >= MAX_INVALID_SHOWN) return;
          invalidShown++;
          bar?.clear();
          process.stderr.write(
            `${file}: line ${bad.line}: ${printable(bad.field)}: ${printable(bad.message)}\n`,
          );
        },
        ...(opts.explain !== undefined && {
          explain: { sessionKey: opts.explain, onReply: (r: ExplainedReply) => void explained.push(r) },
        }),
      },
    );
    flush();
  } finally {
    bar?.clear();
    if (decisions !== undefined) closeSync(decisions);
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  }
  if (invalidTotal > invalidShown) {
    process.stderr.write(`${file}: ${plural(invalidTotal - invalidShown, "more invalid line")} not shown\n`);
  }
  const shown = { ...summary, ledger: opts.db ?? "(temporary, removed)" };
  if (opts.json) {
    const withExplain =
      opts.explain === undefined
        ? shown
        : { ...shown, explain: { session_key: opts.explain, replies: explained } };
    process.stdout.write(`${JSON.stringify(withExplain, null, 2)}\n`);
  } else {
    process.stdout.write(renderSummary(file, shown));
    if (opts.explain !== undefined) process.stdout.write(renderExplainedReplay(opts.explain, explained));
  }
  return summary.invalid > 0 ? 1 : 0;
}

export function renderSummary(file: string, s: ReplaySummary): string {
  const out: string[] = [];
  const pad = (label: string) => `  ${label.padEnd(16)}`;
  // Right-aligned counts with their noun, singular for one, so the columns stay aligned.
  const n = (x: number, one: string) => `${count(x).padStart(8)} ${x === 1 ? `${one} ` : `${one}s`}`;
  const usd = usdColumn([
    s.spent_usd,
    s.saved_usd,
    s.unguarded_usd,
    ...s.stuck_sessions.map((e) => e.saved_usd),
  ]);
  out.push(`judge-guard replay of ${file} (${plural(s.lines, "line")}, ${s.mode} mode)`);
  out.push(`${pad("judged")}${n(s.judged, "call")}   ${usd(s.spent_usd)} spent`);
  out.push(`${pad("skipped")}${n(s.skipped, "call")}   ${usd(s.saved_usd)} saved`);
  for (const [reason, k] of Object.entries(s.skipped_by_reason).sort((a, b) => b[1] - a[1])) {
    out.push(`${pad(`  ${reason}`)}${count(k).padStart(8)}`);
  }
  for (const [reason, k] of Object.entries(s.would_skip_by_reason).sort((a, b) => b[1] - a[1])) {
    out.push(`${pad(`  would skip: ${reason}`)}${count(k).padStart(8)}`);
  }
  if (s.invalid > 0) out.push(`${pad("invalid")}${n(s.invalid, "line")} (see stderr)`);
  out.push(
    `${pad("unguarded cost")}${usd(s.unguarded_usd).padStart(8)}   guarded ${usd(s.spent_usd)}: ${percent(s.saved_usd, s.unguarded_usd)} saved`,
  );
  if (s.stuck_sessions.length === 0) {
    out.push("no stuck sessions found");
  } else {
    out.push("stuck sessions:");
    for (const e of s.stuck_sessions) {
      out.push(
        `  ${printable(e.session_key)}: stuck from line ${e.detected_line} (canned reply ${e.fingerprint} seen ${plural(e.repeats, "time")}), ` +
          `${plural(e.skipped_calls, "judge call")} skipped, ${usd(e.saved_usd)} saved`,
      );
    }
  }
  out.push(`signals to force a fresh session: ${s.signals}`);
  if (s.budget_alerts > 0) out.push(`budget alerts: ${s.budget_alerts}`);
  out.push(`ledger: ${s.ledger}`);
  return `${out.join("\n")}\n`;
}
