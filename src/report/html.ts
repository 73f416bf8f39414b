import { count, percent, usd } from "../cli/format.js";
import { capsLine, mixedSources } from "./render.js";
import type { Report } from "./report.js";

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/**
 * Charged (dark) and saved (light) per period as grouped bars, in SVG drawn here: one group per
 * period, a y axis in USD. No script, no fonts, no fetch.
 */
function chart(r: Report): string {
  const points = r.series.points;
  const W = 640;
  const H = 240;
  const pad = { left: 56, right: 8, top: 12, bottom: 28 };
  const max = Math.max(0.01, ...points.map((p) => Math.max(p.charged_usd, p.saved_usd)));
  const plotW = W - pad.left - pad.right;
  const plotH = H - pad.top - pad.bottom;
  const slot = plotW / Math.max(1, points.length);
  const bar = Math.max(1, Math.min(24, slot / 2 - 1));
  const y = (v: number) => pad.top + plotH - (v / max) * plotH;
  const label = (p: (typeof points)[number]) =>
    r.series.bucket === "hour" ? p.start.slice(11, 13) : p.start.slice(5, 10);
  const every = Math.ceil(points.length / 12);
  const bars = points
    .map((p, i) => {
      const x = pad.left + i * slot + slot / 2 - bar;
      const title = `${p.start}: charged ${usd(p.charged_usd)}, saved ${usd(p.saved_usd)}`;
      return (
        `<g class="period" data-start="${p.start}"><title>${escapeHtml(title)}</title>` +
        `<rect class="charged" x="${x.toFixed(1)}" y="${y(p.charged_usd).toFixed(1)}" width="${bar.toFixed(1)}" height="${(pad.top + plotH - y(p.charged_usd)).toFixed(1)}"/>` +
        `<rect class="saved" x="${(x + bar).toFixed(1)}" y="${y(p.saved_usd).toFixed(1)}" width="${bar.toFixed(1)}" height="${(pad.top + plotH - y(p.saved_usd)).toFixed(1)}"/>` +
        (i % every === 0
          ? `<text x="${(x + bar).toFixed(1)}" y="${H - 8}" text-anchor="middle">${escapeHtml(label(p))}</text>`
          : "") +
        "</g>"
      );
    })
    .join("");
  const ticks = [0, 0.5, 1]
    .map(
      (f) =>
        `<text x="${pad.left - 6}" y="${(y(max * f) + 4).toFixed(1)}" text-anchor="end">${escapeHtml(usd(max * f))}</text>`,
    )
    .join("");
  return (
    `<svg id="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="USD charged and saved per ${r.series.bucket}" xmlns="http://www.w3.org/2000/svg">` +
    `<line x1="${pad.left}" y1="${pad.top + plotH}" x2="${W - pad.right}" y2="${pad.top + plotH}" class="axis"/>${ticks}${bars}</svg>`
  );
}

/** One self-contained HTML file: totals, the chart, the per-key table. Readable on a phone. */
export function renderHtml(r: Report): string {
  const t = r.totals;
  const rows = r.sessions
    .map((s) => {
      const stuck = s.episodes
        .map((e) => `${e.ended === null ? "ongoing" : "recovered"} (${e.repeats}x)`)
        .join(", ");
      return `<tr><td>${escapeHtml(s.session_key)}</td><td>${count(s.calls - s.skipped)}</td><td>${count(s.skipped)}</td><td>${usd(s.charged_usd)}</td><td>${usd(s.saved_usd)}</td><td>${usd(s.budget.used_usd)}${s.budget.cap_usd === null ? "" : ` / ${usd(s.budget.cap_usd)}`}</td><td>${escapeHtml(stuck)}</td></tr>`;
    })
    .join("\n");
  const reasons = Object.entries(t.skipped_by_reason)
    .map(
      ([reason, n]) =>
        `<li>${escapeHtml(reason)}: ${count(n)} calls, ${usd(t.saved_by_reason[reason] ?? 0)}</li>`,
    )
    .join("");
  const sources = mixedSources(t)
    ? `<p class="sources" id="cost-sources">charged: ${usd(t.reported_usd)} reported by the judges (tokens x price of the same calls: ${usd(t.reported_computed_usd)}) · ${usd(t.computed_usd)} computed from tokens x price · ${usd(t.estimated_usd)} estimated${t.unknown_source_usd > 0 ? ` · ${usd(t.unknown_source_usd)} not recorded` : ""}</p>`
    : "";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>judge-guard report ${escapeHtml(r.range.since.slice(0, 10))}</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:16px;max-width:960px;color:#1c2430;background:#fff}
h1{font-size:1.3em;margin:0 0 4px}h2{font-size:1.05em;margin:24px 0 8px}.range{color:#5b6675;margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:8px}
.card{border:1px solid #dde3ea;border-radius:8px;padding:10px}.card b{display:block;font-size:1.35em}
#chart{width:100%;height:auto;border:1px solid #dde3ea;border-radius:8px}#chart text{font-size:11px;fill:#5b6675}
#chart .charged{fill:#2f5d9e}#chart .saved{fill:#8cc9a6}#chart .axis{stroke:#9aa5b1}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;border-radius:2px}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{padding:6px 8px;border-bottom:1px solid #e6ebf0;text-align:right;white-space:nowrap}th:first-child,td:first-child,td:last-child,th:last-child{text-align:left}
</style>
</head>
<body>
<h1>judge-guard report</h1>
<p class="range">${escapeHtml(r.range.since)} to ${escapeHtml(r.range.until)}${r.session_key ? ` · ${escapeHtml(r.session_key)}` : ""}</p>
<div class="cards">
<div class="card">charged<b>${usd(t.charged_usd)}</b>${count(t.calls_judged)} calls judged</div>
<div class="card">saved<b>${usd(t.saved_usd)}</b>${count(t.calls_skipped)} calls skipped</div>
<div class="card">unguarded<b>${usd(t.unguarded_usd)}</b>${percent(t.saved_usd, t.unguarded_usd)} saved</div>
</div>
${sources}
${reasons ? `<ul>${reasons}</ul>` : ""}
<h2>Charged and saved per ${r.series.bucket}</h2>
<p class="legend"><span style="background:#2f5d9e"></span>charged<span style="background:#8cc9a6"></span>saved</p>
${chart(r)}
<h2>Per session key</h2>
<div class="scroll"><table id="sessions">
<thead><tr><th>session key</th><th>judged</th><th>skipped</th><th>charged</th><th>saved</th><th>budget used</th><th>stuck</th></tr></thead>
<tbody>
${rows}
</tbody></table></div>
<p class="caps" id="caps">${escapeHtml(capsLine(r.config))}</p>
</body>
</html>
`;
}
