import { writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fromEnv } from "../config/env.js";
import { durationMs } from "../guard/option-kinds.js";
import { DEFAULTS } from "../guard/options.js";
import { renderHtml } from "../report/html.js";
import { renderCsv, renderTable } from "../report/render.js";
import { buildReport } from "../report/report.js";
import { ledgerName, openReader } from "../store/open.js";
import { LedgerReadError } from "../store/reader.js";
import { printable } from "../util/printable.js";
import { fsReason, UsageError } from "./errors.js";
import { count } from "./format.js";

export interface ReportCommandOptions {
  readonly db?: string;
  readonly since?: string;
  readonly until?: string;
  readonly sessionKey?: string;
  readonly format?: string;
  readonly by?: string;
  readonly out?: string;
}

const FORMATS = ["table", "json", "csv", "html"] as const;
/** "24h", "7d", "90m", "30s" back from `now`, or an ISO-8601 time. */
export function parseTime(value: string, option: string, now: number): number {
  const ago = durationMs(value);
  if (ago !== undefined) return now - ago;
  const t = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(t)) {
    throw new UsageError(
      `${option} ${JSON.stringify(value)} is not valid: use 24h, 7d, 90m or an ISO-8601 time such as 2026-11-20T08:00:00Z`,
    );
  }
  return t;
}

/** An ISO time to the second: the hint below is for typing. */
const second = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

/**
 * For a range with no decisions: the range the ledger does hold (for the key asked about), as
 * the --since and --until that show it. The bundled incident is dated 2026-11-20, so the
 * default "last 24 hours" after replaying it is empty.
 */
function heldElsewhere(setting: string, since: number, until: number, o: ReportCommandOptions): string {
  const ledger = ledgerName(setting);
  const range = `no decisions from ${second(since)} to ${second(until)}`;
  const key = o.sessionKey;
  const forKey = key === undefined ? "" : ` for session key ${key}`;
  const reader = openReader(setting);
  let held: ReturnType<typeof reader.decisionSpan>;
  try {
    held = reader.decisionSpan(key);
  } finally {
    reader.close();
  }
  if (held.count === 0) return `${range}; ${ledger} holds no decisions${forKey} at all`;
  const from = second(held.firstMs!);
  // --until is exclusive: the second after the last decision.
  const to = second(Math.floor(held.lastMs! / 1000) * 1000 + 1000);
  return `${range}; ${ledger} holds ${count(held.count)} ${held.count === 1 ? "decision" : "decisions"}${forKey} from ${from} to ${to}: see them with --since ${from} --until ${to}`;
}

/** `judge-guard report`: exit 0, 1 for data problems (missing, empty or newer ledger), 2 for usage. */
export function reportCommand(o: ReportCommandOptions, now = Date.now()): number {
  const format = o.format ?? "table";
  if (!(FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`--format ${JSON.stringify(format)} is not one of ${FORMATS.join(", ")}`);
  }
  const by = o.by ?? "key";
  if (by !== "key" && by !== "day") throw new UsageError(`--by ${JSON.stringify(by)} is not one of key, day`);
  if (o.by !== undefined && format !== "csv") throw new UsageError("--by applies to --format csv only");
  if (format === "html" && !o.out)
    throw new UsageError("--format html needs --out FILE (the report is one self-contained file)");
  const until = o.until === undefined ? now : parseTime(o.until, "--until", now);
  const since = parseTime(o.since ?? "24h", "--since", until);
  if (since >= until)
    throw new UsageError(
      `--since (${new Date(since).toISOString()}) must be before --until (${new Date(until).toISOString()})`,
    );
  const env = fromEnv(process.env);
  const ledger = o.db ?? (typeof env.ledger === "string" ? env.ledger : DEFAULTS.ledger);
  let report: ReturnType<typeof buildReport>;
  try {
    report = buildReport(ledger, {
      since,
      until,
      sessionKey: o.sessionKey,
      // Only for a ledger that records no guard configuration (before schema v4): the report
      // otherwise reads the caps the guard recorded, not this process's environment.
      sessionBudgetUsd: env.sessionBudgetUsd ?? DEFAULTS.sessionBudgetUsd,
      budgetWindowMs: env.budgetWindowMs ?? DEFAULTS.budgetWindowMs,
      ...(by === "day" && { bucket: "day" }),
      ...(format === "html" && { detail: true }),
    });
  } catch (e) {
    if (e instanceof LedgerReadError) {
      process.stderr.write(`judge-guard: report: ${printable(e.message)}\n`);
      return 1;
    }
    throw e;
  }
  const t = report.totals;
  if (t.calls_judged + t.calls_skipped + t.calls_failed === 0) {
    process.stderr.write(`judge-guard: report: ${printable(heldElsewhere(ledger, since, until, o))}\n`);
  }
  let text: string;
  if (format === "html") text = renderHtml(report);
  else if (format === "json") text = `${JSON.stringify(report, null, 2)}\n`;
  else if (format === "csv") text = renderCsv(report, by);
  else {
    // Fit the terminal (or $COLUMNS); piped or written to a file, nothing is cut.
    const columns =
      o.out === undefined
        ? (process.stdout.columns ?? (Number(process.env.COLUMNS) || Number.POSITIVE_INFINITY))
        : Number.POSITIVE_INFINITY;
    text = renderTable(report, Math.max(60, columns));
  }
  if (o.out === undefined) {
    process.stdout.write(text);
    return 0;
  }
  try {
    writeFileSync(o.out, text);
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === "ENOENT";
    throw new UsageError(
      `cannot write --out ${o.out}: ${missing ? `its folder ${dirname(resolve(o.out))} does not exist` : fsReason(e)}`,
    );
  }
  process.stdout.write(`wrote ${o.out}\n`);
  return 0;
}
