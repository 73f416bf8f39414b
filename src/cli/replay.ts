import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fromEnv } from "../config/env.js";
import { isJudgeGuardError } from "../errors.js";
import { DEFAULTS } from "../guard/options.js";
import type { LogLevel } from "../log/logger.js";
import { type ExplainedReply, openLines, type ReplaySummary, replay } from "../replay/replay.js";
import { ledgerName } from "../store/open.js";
import { isPostgresUrl } from "../store/postgres-connection.js";
import { inspectPostgres } from "../store/postgres-reader.js";
import { inspectLedger } from "../store/sqlite-reader.js";
import { printable } from "../util/printable.js";
import { fsReason, InputError, UsageError } from "./errors.js";
import { renderExplainedReplay } from "./explain.js";
import { count, ProgressBar, percent, plural, usdColumn } from "./format.js";
import { createCliLogger } from "./log.js";

export interface ReplayCommandOptions {
  readonly db?: string;
  readonly decisions?: string;
  readonly json?: boolean;
  readonly progress?: boolean;
  readonly explain?: string;
  readonly append?: boolean;
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
 * Checks `--db PATH` before anything opens it: PATH must not be a folder, and its folder must
 * be one or be creatable. Returns the folders to create (outermost first), none when its folder
 * exists. Throws a one-line UsageError naming the option, the path and the fault.
 */
export function checkDbPath(path: string): string[] {
  if (path === ":memory:") return [];
  const bad = (what: string): never => {
    throw new UsageError(`--db ${path}: ${what}`);
  };
  if (path === "") throw new UsageError("--db: the path is empty; give the path of a SQLite file");
  const full = resolve(path);
  const self = kindOf(full);
  if (self === "folder") bad("is a folder; give the path of a SQLite file");
  if (self === "file") return [];
  const parent = dirname(full);
  const folder = kindOf(parent);
  if (folder === "folder") {
    if (self !== "ENOENT") bad(`cannot be used (${self})`);
    return [];
  }
  if (folder === "file") bad(`${parent} is not a folder`);
  if (folder === "ENOTDIR") bad(`the folder ${parent} does not exist: part of it is a file, not a folder`);
  if (folder !== "ENOENT") bad(`cannot use the folder ${parent} (${folder})`);
  // Missing folders are created, as the library does. One at a time, not mkdir -p: Node's
  // recursive mkdir never returns under /proc, where a missing folder cannot be made.
  const missing: string[] = [];
  let p = parent;
  while (kindOf(p) === "ENOENT" && dirname(p) !== p) {
    missing.unshift(p);
    p = dirname(p);
  }
  const above = kindOf(p);
  if (above !== "folder")
    bad(`the folder ${parent} cannot be created: ${above === "file" ? `${p} is a file` : `${p} (${above})`}`);
  return missing;
}

/** Creates the folders {@link checkDbPath} returned, or throws a UsageError naming the one that failed. */
function makeFolders(path: string, folders: readonly string[]): void {
  for (const f of folders) {
    try {
      mkdirSync(f);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") continue;
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === "ENOENT" ? "the file system refused it (ENOENT)" : fsReason(e);
      throw new UsageError(`--db ${path}: cannot create the folder ${f}: ${why}`);
    }
  }
}

/**
 * The ledger's own messages name `--db (or JUDGE_GUARD_DB)`, as a guard reads either. A replay
 * reads only --db: name that alone, and the path once.
 */
function namingDb(setting: string, message: string): string {
  const path = ledgerName(setting);
  const m = message
    .replace(/--db \(or JUDGE_GUARD_DB\)/g, "--db")
    .replace(/JUDGE_GUARD_DB \(--db\)/g, "--db")
    .replace(/--db or JUDGE_GUARD_DB/g, "--db")
    .replace(/JUDGE_GUARD_DB/g, "--db");
  return m.startsWith(`${path} `) ? `--db ${m}` : `--db ${path}: ${m}`;
}

/**
 * What an existing --db file holds, before the guard opens (and migrates) it: a file that is no
 * ledger is refused, and so is one that holds decisions already, unless `append`: a second replay
 * into one ledger would double every figure of its report without a word.
 */
function checkExistingLedger(setting: string, append: boolean): void {
  const database = isPostgresUrl(setting);
  if (!database && (setting === ":memory:" || !existsSync(setting) || statSync(setting).size === 0)) return;
  const found = database ? inspectPostgres(setting) : inspectLedger(setting);
  const path = ledgerName(setting);
  if (found.kind === "foreign") throw new UsageError(namingDb(setting, found.problem));
  if (found.kind === "not-sqlite")
    throw new UsageError(
      `--db ${path} is not a judge-guard ledger (not a SQLite file): give --db a new file or an existing ledger`,
    );
  // Unreadable now (a lock, a fault of the file): the guard opens it next, and says what is wrong.
  if (found.kind !== "ledger" || append) return;
  const held = found.decisions;
  if (held.count === 0) return;
  const range = `${new Date(held.firstMs!).toISOString()} .. ${new Date(held.lastMs!).toISOString()}`;
  throw new UsageError(
    `--db ${path} already holds ${count(held.count)} ${held.count === 1 ? "decision" : "decisions"} (${range}): replaying into it adds to them, and its report would count both. Give a new file, delete this one, or pass --append to add to it`,
  );
}

/** A failure while reading FILE, as one line naming it (a truncated .gz said "unexpected end of file"). */
function inputFailure(file: string, line: number, e: unknown): InputError | undefined {
  const code = (e as NodeJS.ErrnoException)?.code;
  const after = line === 0 ? "before its first line" : `after line ${count(line)}`;
  if (code === "Z_BUF_ERROR")
    return new InputError(
      `${file} is truncated: its gzip data ends early, ${after} (a download or copy cut short?); the replay stopped`,
    );
  if (typeof code === "string" && code.startsWith("Z_"))
    return new InputError(
      `${file} is not valid gzip data ${after} (${(e as Error).message}); the replay stopped`,
    );
  if (code !== undefined && FS_CODES.has(code))
    return new InputError(`cannot read ${file} ${after}: ${fsReason(e)}; the replay stopped`);
  return undefined;
}

const FS_CODES = new Set(["EIO", "EISDIR", "EACCES", "EPERM", "ENOENT", "ESTALE"]);

/** `judge-guard replay FILE`: returns the process exit code. */
export async function replayCommand(file: string, opts: ReplayCommandOptions): Promise<number> {
  const options = fromEnv(process.env);
  if (opts.append && opts.db === undefined)
    throw new UsageError("--append adds to the ledger given by --db: give --db PATH too");
  const folders = opts.db === undefined || isPostgresUrl(opts.db) ? [] : checkDbPath(opts.db);
  if (opts.db !== undefined) checkExistingLedger(opts.db, opts.append === true);
  let input: Awaited<ReturnType<typeof openLines>>;
  try {
    input = await openLines(file);
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${fsReason(e)}`);
  }
  if (opts.db !== undefined) makeFolders(opts.db, folders);
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
  const level: LogLevel = typeof options.logger === "string" ? options.logger : DEFAULTS.logger;
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
  } catch (e) {
    const fault = inputFailure(file, linesSeen, e);
    if (fault !== undefined) throw fault;
    if (opts.db !== undefined && isJudgeGuardError(e) && /^LEDGER_(SCHEMA|FAULT)$/.test(e.code))
      throw new UsageError(namingDb(opts.db, e.message));
    throw e;
  } finally {
    bar?.clear();
    if (decisions !== undefined) closeSync(decisions);
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  }
  if (invalidTotal > invalidShown) {
    process.stderr.write(`${file}: ${plural(invalidTotal - invalidShown, "more invalid line")} not shown\n`);
  }
  const shown = { ...summary, ledger: opts.db === undefined ? "(temporary, removed)" : ledgerName(opts.db) };
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
