import { count, percent, usd } from "../cli/format.js";
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
  const cap = c.session_budget_usd === null ? "no session cap" : `session cap ${usd(c.session_budget_usd)}`;
  const what = `${cap} per ${window(c.budget_window_ms)}`;
  if (c.source === "environment")
    return `budget used / cap: ${what} from this environment (the ledger records no guard caps)`;
  const changed =
    c.changed.length === 0
      ? ""
      : `\ncaps changed during the range (${c.changed.join(", ")}): the latest is shown`;
  return `budget used / cap: ${what}, as the guard that wrote the ledger configured it${changed}`;
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

function budget(s: SessionRow): string {
  if (s.budget.cap_usd === null) return usd(s.budget.used_usd);
  return `${usd(s.budget.used_usd)} / ${usd(s.budget.cap_usd)}`;
}

function episodes(s: SessionRow): string {
  if (s.episodes.length === 0) return "";
  return s.episodes
    .map((e) => {
      const delivered = e.signals.filter((x) => x.status === "delivered").length;
      const state = e.ended === null ? "ongoing" : "recovered";
      return `${state} since ${e.started.slice(11, 16)} (${delivered}/${e.signals.length} signalled)`;
    })
    .join("; ");
}

/** The human view: totals, then per key, per judge kind, per model, the series, the estimates. */
export function renderTable(r: Report, width = 100): string {
  const t = r.totals;
  const out: string[] = [];
  out.push(
    `judge-guard report ${r.range.since} .. ${r.range.until}${r.session_key ? ` for ${printable(r.session_key)}` : ""}`,
  );
  out.push("");
  out.push(
    `  judged     ${count(t.calls_judged).padStart(8)} calls   ${usd(t.charged_usd)} charged${t.calls_failed ? ` (${count(t.calls_failed)} failed calls included)` : ""}`,
  );
  if (mixedSources(t)) {
    const n = t.calls_by_cost_source;
    const line = (label: string, calls: number, amount: number, extra = "") =>
      out.push(`    ${label.padEnd(16)}${count(calls).padStart(6)}   ${usd(amount)}${extra}`);
    line(
      "reported cost",
      n.reported,
      t.reported_usd,
      n.reported > 0 ? ` (tokens x price of the same calls: ${usd(t.reported_computed_usd)})` : "",
    );
    line("computed", n.computed, t.computed_usd, " (tokens x price)");
    line("estimate", n.estimate, t.estimated_usd);
    if (t.unknown_source_usd > 0) line("not recorded", n.unknown, t.unknown_source_usd);
  }
  out.push(`  skipped    ${count(t.calls_skipped).padStart(8)} calls   ${usd(t.saved_usd)} saved`);
  for (const [reason, n] of Object.entries(t.skipped_by_reason).sort((a, b) => b[1] - a[1])) {
    out.push(`    ${reason.padEnd(16)}${count(n).padStart(6)}   ${usd(t.saved_by_reason[reason] ?? 0)}`);
  }
  out.push(`  unguarded  ${usd(t.unguarded_usd)}: the guard saved ${percent(t.saved_usd, t.unguarded_usd)}`);
  if (r.sessions.length > 0) {
    out.push("", "per session key");
    out.push(
      table(
        ["session key", "judged", "skipped", "charged", "saved", "budget used", "stuck episodes"],
        r.sessions.map((s) => [
          s.session_key,
          count(s.calls - s.skipped),
          count(s.skipped),
          usd(s.charged_usd),
          usd(s.saved_usd),
          budget(s),
          episodes(s),
        ]),
        width,
        [false, true, true, true, true, true, false],
        6,
      ),
    );
    out.push(capsLine(r.config));
  }
  const mixed = mixedSources(t);
  for (const [title, rows] of [
    ["per judge kind", r.by_judge],
    ["per model", r.by_model],
  ] as const) {
    if (rows.length === 0) continue;
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
        ],
        rows.map((x) => [
          x.name,
          count(x.calls),
          count(x.input_tokens),
          count(x.output_tokens),
          count(x.cache_read_tokens),
          count(x.cache_write_tokens),
          ...(mixed ? [usd(x.reported_usd), usd(x.computed_usd), usd(x.estimated_usd)] : []),
          usd(x.charged_usd),
        ]),
        width,
        [false, true, true, true, true, true, true, ...(mixed ? [true, true, true] : [])],
      ),
    );
  }
  if (r.series.points.length > 0) {
    out.push("", `per ${r.series.bucket}`);
    out.push(
      table(
        [r.series.bucket, "charged", "saved"],
        r.series.points.map((p) => [
          r.series.bucket === "hour" ? p.start.slice(0, 13).replace("T", " ") : p.start.slice(0, 10),
          usd(p.charged_usd),
          usd(p.saved_usd),
        ]),
        width,
        [false, true, true],
      ),
    );
  }
  const e = r.estimates;
  if (e.calls > 0) {
    out.push(
      "",
      `estimates: ${count(e.calls)} calls reserved ${usd(e.reserved_usd)}, settled at ${usd(e.charged_usd)} (ratio ${e.ratio}, mean error ${usd(e.mean_abs_error_usd ?? 0)} a call)`,
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
