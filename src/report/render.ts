import { count, percent, plural, usdColumn } from "../util/format.js";
import { formatUsd } from "../util/money.js";
import { printable } from "../util/printable.js";
import type { CostSplit, Report, ReportConfig, SessionRow } from "./report.js";

/** Whether any charge in the report came from elsewhere than tokens x price. */
export function mixedSources(t: CostSplit): boolean {
  return t.reported_usd > 0 || t.estimated_usd > 0 || t.unknown_source_usd > 0;
}

const window = (ms: number): string =>
  ms % 86_400_000 === 0 && ms > 86_400_000
    ? `${ms / 86_400_000}d`
    : ms % 3_600_000 === 0
      ? `${ms / 3_600_000}h`
      : `${Math.round(ms / 60_000)}m`;

/** Where the caps of the budget column come from, in words (one or two lines). */
export function capsLine(c: ReportConfig): string {
  const cap =
    c.session_budget_usd === null ? "no session cap" : `session cap ${formatUsd(c.session_budget_usd)}`;
  const what = `${cap} per ${window(c.budget_window_ms)}`;
  if (c.source === "environment")
    return `budget used / cap: ${what} from this environment (the ledger records no guard caps)`;
  const changed =
    c.changed.length === 0
      ? ""
      : `\ncaps changed during the range (${c.changed.join(", ")}): the latest is shown`;
  return `budget used / cap: ${what}, as the guard that wrote the ledger configured it${changed}`;
}

/** The caps per judge kind in words, when the guard capped any (else null). */
export function judgeCapsLine(c: ReportConfig): string | null {
  const named = Object.entries(c.judge_budgets_usd ?? {});
  if (c.judge_budget_usd === null && named.every(([, cap]) => cap === null)) return null;
  const money = usdColumn([...named.map(([, m]) => m ?? 0), c.judge_budget_usd ?? 0]);
  const cap = (usd_: number | null) => (usd_ === null ? "none" : money(usd_));
  const parts = [
    ...named.map(([judge, usd_]) => `${printable(judge)} ${cap(usd_)}`),
    `${named.length > 0 ? "any other kind" : "each judge kind"} ${cap(c.judge_budget_usd)}`,
  ];
  return `judge budget used / cap per 24h, all keys together: ${parts.join(", ")}${c.source === "ledger" ? ", as the guard that wrote the ledger configured it" : ""}`;
}

/** Aligned columns that fit `width` characters: column `give` (a text column) gives way. */
export function table(
  headers: string[],
  rows: string[][],
  width = 100,
  right: boolean[] = [],
  give = 0,
): string {
  // Names come from the ledger, where any caller may have put control characters.
  rows = rows.map((r) => r.map(printable));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const total = widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  if (total > width) widths[give] = Math.max(10, widths[give]! - (total - width));
  const cell = (text: string, i: number) => {
    const w = widths[i]!;
    const t = text.length > w ? `${text.slice(0, w - 1)}…` : text;
    return right[i] ? t.padStart(w) : t.padEnd(w);
  };
  const line = (cells: string[]) => cells.map(cell).join("  ").trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

function budget(s: SessionRow, money: (n: number) => string): string {
  if (s.budget.cap_usd === null) return money(s.budget.used_usd);
  return `${money(s.budget.used_usd)} / ${money(s.budget.cap_usd)}`;
}

/**
 * A time of the report in UTC, labelled: the hour and minute when the whole range lies within
 * one UTC day, the date too otherwise.
 */
function utcTime(iso: string, r: Report): string {
  const sameDay =
    r.range.since.slice(0, 10) === new Date(Date.parse(r.range.until) - 1).toISOString().slice(0, 10) &&
    iso.slice(0, 10) === r.range.since.slice(0, 10);
  return `${sameDay ? iso.slice(11, 16) : `${iso.slice(0, 10)} ${iso.slice(11, 16)}`} UTC`;
}

function episodes(s: SessionRow, r: Report): string {
  if (s.episodes.length === 0) return "";
  return s.episodes
    .map((e) => {
      const delivered = e.signals.filter((x) => x.status === "delivered").length;
      const state = e.ended === null ? "ongoing" : "recovered";
      return `${state} since ${utcTime(e.started, r)} (${delivered}/${e.signals.length} signalled)`;
    })
    .join("; ");
}

/** A count of calls right-aligned in a summary block, its noun singular for one. */
const calls = (n: number): string => `${count(n).padStart(8)} ${n === 1 ? "call " : "calls"}`;

/** The human view: totals, then per key, per judge kind, per model, the series, the estimates. */
export function renderTable(r: Report, width = 100): string {
  const t = r.totals;
  const out: string[] = [];
  out.push(
    `judge-guard report ${r.range.since} .. ${r.range.until}${r.session_key ? ` for ${printable(r.session_key)}` : ""}`,
  );
  out.push("");
  // The judge ran for failed calls too (and they may be charged): they are counted as judged,
  // as in the per-key column, and said apart.
  const ran = t.calls_judged + t.calls_failed;
  const mixed = mixedSources(t);
  const money = usdColumn([
    t.charged_usd,
    t.saved_usd,
    t.unguarded_usd,
    ...Object.values(t.saved_by_reason),
    ...(mixed
      ? [t.reported_usd, t.reported_computed_usd, t.computed_usd, t.estimated_usd, t.unknown_source_usd]
      : []),
  ]);
  out.push(
    `  judged     ${calls(ran)}   ${money(t.charged_usd)} charged${t.calls_failed ? ` (${plural(t.calls_failed, "failed call")} included)` : ""}`,
  );
  if (mixed) {
    const n = t.calls_by_cost_source;
    const line = (label: string, calls: number, amount: number, extra = "") =>
      out.push(`    ${label.padEnd(16)}${count(calls).padStart(6)}   ${money(amount)}${extra}`);
    line(
      "reported cost",
      n.reported,
      t.reported_usd,
      n.reported > 0 ? ` (tokens x price of the same calls: ${money(t.reported_computed_usd)})` : "",
    );
    line("computed", n.computed, t.computed_usd, " (tokens x price)");
    line("estimate", n.estimate, t.estimated_usd);
    if (t.unknown_source_usd > 0) line("not recorded", n.unknown, t.unknown_source_usd);
  }
  out.push(`  skipped    ${calls(t.calls_skipped)}   ${money(t.saved_usd)} saved`);
  for (const [reason, n] of Object.entries(t.skipped_by_reason).sort((a, b) => b[1] - a[1])) {
    out.push(`    ${reason.padEnd(16)}${count(n).padStart(6)}   ${money(t.saved_by_reason[reason] ?? 0)}`);
  }
  out.push(
    `  unguarded  ${money(t.unguarded_usd)}: the guard saved ${percent(t.saved_usd, t.unguarded_usd)}`,
  );
  if (r.sessions.length > 0) {
    const charged = usdColumn(r.sessions.map((s) => s.charged_usd));
    const saved = usdColumn(r.sessions.map((s) => s.saved_usd));
    const budgets = usdColumn(r.sessions.flatMap((s) => [s.budget.used_usd, s.budget.cap_usd ?? 0]));
    out.push("", "per session key");
    out.push(
      table(
        ["session key", "judged", "skipped", "charged", "saved", "budget used", "stuck episodes"],
        r.sessions.map((s) => [
          s.session_key,
          count(s.calls - s.skipped),
          count(s.skipped),
          charged(s.charged_usd),
          saved(s.saved_usd),
          budget(s, budgets),
          episodes(s, r),
        ]),
        width,
        [false, true, true, true, true, true, false],
        6,
      ),
    );
    out.push(capsLine(r.config));
  }
  for (const [title, rows] of [
    ["per judge kind", r.by_judge],
    ["per model", r.by_model],
  ] as const) {
    if (rows.length === 0) continue;
    const column = (f: (x: (typeof rows)[number]) => number) => {
      const m = usdColumn(rows.map(f));
      return (x: (typeof rows)[number]) => m(f(x));
    };
    const capped = rows.some((x) => x.budget !== undefined);
    const budgets = usdColumn(
      rows.flatMap((x) => (x.budget ? [x.budget.used_usd, x.budget.cap_usd ?? 0] : [])),
    );
    const budget = (x: (typeof rows)[number]) =>
      x.budget === undefined
        ? ""
        : x.budget.cap_usd === null
          ? budgets(x.budget.used_usd)
          : `${budgets(x.budget.used_usd)} / ${budgets(x.budget.cap_usd)}`;
    const reported = column((x) => x.reported_usd);
    const computed = column((x) => x.computed_usd);
    const estimated = column((x) => x.estimated_usd);
    const charged = column((x) => x.charged_usd);
    out.push("", title);
    out.push(
      table(
        [
          "name",
          "calls",
          "input",
          "output",
          "cache read",
          "cache write",
          ...(mixed ? ["reported", "computed", "estimate"] : []),
          "charged",
          ...(capped ? ["budget used"] : []),
        ],
        rows.map((x) => [
          x.name,
          count(x.calls),
          count(x.input_tokens),
          count(x.output_tokens),
          count(x.cache_read_tokens),
          count(x.cache_write_tokens),
          ...(mixed ? [reported(x), computed(x), estimated(x)] : []),
          charged(x),
          ...(capped ? [budget(x)] : []),
        ]),
        width,
        [
          false,
          true,
          true,
          true,
          true,
          true,
          true,
          ...(mixed ? [true, true, true] : []),
          ...(capped ? [true] : []),
        ],
      ),
    );
    const caps = capped ? judgeCapsLine(r.config) : null;
    if (caps !== null) out.push(caps);
  }
  if (r.series.points.length > 0) {
    const charged = usdColumn(r.series.points.map((p) => p.charged_usd));
    const saved = usdColumn(r.series.points.map((p) => p.saved_usd));
    out.push("", `per ${r.series.bucket}`);
    out.push(
      table(
        [`${r.series.bucket} (UTC)`, "charged", "saved"],
        r.series.points.map((p) => [
          r.series.bucket === "hour" ? p.start.slice(0, 13).replace("T", " ") : p.start.slice(0, 10),
          charged(p.charged_usd),
          saved(p.saved_usd),
        ]),
        width,
        [false, true, true],
      ),
    );
  }
  const e = r.estimates;
  if (e.calls > 0) {
    const m = usdColumn([e.reserved_usd, e.charged_usd]);
    out.push(
      "",
      `estimates: ${plural(e.calls, "call")} reserved ${m(e.reserved_usd)}, settled at ${m(e.charged_usd)} (ratio ${e.ratio}, mean error ${formatUsd(e.mean_abs_error_usd ?? 0)} a call)`,
    );
  }
  if (t.calls_judged + t.calls_skipped + t.calls_failed === 0) out.push("", "no decisions in this range");
  return `${out.join("\n")}\n`;
}

/**
 * RFC 4180 quoting, and text a spreadsheet would run as a formula (starting with =, +, -, @, a
 * tab or a carriage return) made inert with a leading single quote (OWASP's CSV injection
 * advice). Numbers are written as numbers, negative ones included.
 */
export function csvCell(v: string | number | null): string {
  let s = v === null ? "" : String(v);
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

function csv(headers: string[], rows: Array<Array<string | number | null>>): string {
  return `${[headers, ...rows].map((r) => r.map(csvCell).join(",")).join("\r\n")}\r\n`;
}

/** One row per session key, or (`by: "day"`) one row per period of the series. */
export function renderCsv(r: Report, by: "key" | "day"): string {
  if (by === "day") {
    return csv(
      ["period_start", "charged_usd", "saved_usd"],
      r.series.points.map((p) => [p.start, p.charged_usd, p.saved_usd]),
    );
  }
  return csv(
    [
      "session_key",
      "calls",
      "skipped",
      "charged_usd",
      "saved_usd",
      "budget_used_usd",
      "budget_cap_usd",
      "stuck_episodes",
      "ongoing_episodes",
      "reported_usd",
      "reported_computed_usd",
      "computed_usd",
      "estimated_usd",
      "budget_cap_source",
    ],
    r.sessions.map((s) => [
      s.session_key,
      s.calls,
      s.skipped,
      s.charged_usd,
      s.saved_usd,
      s.budget.used_usd,
      s.budget.cap_usd,
      s.episodes.length,
      s.episodes.filter((e) => e.ended === null).length,
      s.reported_usd,
      s.reported_computed_usd,
      s.computed_usd,
      s.estimated_usd,
      r.config.source,
    ]),
  );
}
