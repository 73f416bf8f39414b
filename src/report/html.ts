import { REASON_TEXT } from "../detection/reasons.js";
import type { EvidenceStep } from "../detection/window.js";
import { count, percent } from "../util/format.js";
import { formatUsd } from "../util/money.js";
import { costChart, keyTimeline } from "./charts.js";
import type { EpisodeDetail, ReportDetail, SavedRow } from "./detail.js";
import { duration, html, type Markup, name, Times } from "./markup.js";
import { capsLine, mixedSources } from "./render.js";
import type { EpisodeRow, Report, SessionRow, TokenRow } from "./report.js";
import { EVIDENCE_TEXT, SKIP_REASON_TEXT } from "./words.js";

export interface HtmlOptions {
  /** The IANA time zone shown beside UTC as local time. @default this process's (TZ) */
  readonly timeZone?: string;
}

/** Episodes shown one by one; the rest are counted (the per-key table lists them all). */
const MAX_EPISODES = 50;

const NO_DETAIL: ReportDetail = { timeline: null, saved_by_judge: [], saved_by_model: [], episodes: {} };

const STYLE = `
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:16px;max-width:1040px;color:#1c2430;background:#fff}
h1{font-size:1.3em;margin:0 0 4px}h2{font-size:1.05em;margin:28px 0 8px}h3{font-size:1em;margin:0 0 6px}
.muted,.note,.sources,.caps{color:#5b6675}.note,.sources,.caps{font-size:.9em;margin:6px 0}small{display:block;color:#5b6675;font-size:.82em}
dl.range{display:grid;grid-template-columns:max-content 1fr;gap:0 12px;margin:4px 0 16px;color:#3a4552}dl.range dt{color:#5b6675}dl.range dd{margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:8px}
.card{border:1px solid #dde3ea;border-radius:8px;padding:10px}.card b{display:block;font-size:1.35em}
.empty{border:1px dashed #9aa5b1;border-radius:8px;padding:24px;text-align:center;font-size:1.1em;color:#3a4552;margin:24px 0}
#chart{width:100%;height:auto;border:1px solid #dde3ea;border-radius:8px}#chart text{font-size:11px;fill:#5b6675}
#chart .charged{fill:#2f5d9e}#chart .saved{fill:#8cc9a6}#chart .axis{stroke:#9aa5b1}#chart .grid{stroke:#eef1f4}
.legend{margin:4px 0 8px;font-size:.9em;color:#3a4552}.legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;border-radius:2px;vertical-align:-1px}.legend i:first-child{margin-left:0}
.legend .l-line{width:3px;border-radius:0}
.c-charged,.judged{background:#2f5d9e}.c-saved,.skipped{background:#8cc9a6}.failed{background:#c0392b}.c-band{background:#f6dd9c}
.c-detected{background:#b03a2e}.c-signal{background:#6c3fb5}.c-recovered{background:#1e7f4f}
#timeline .lane{display:grid;grid-template-columns:minmax(9em,16em) 1fr;gap:10px;align-items:center;margin:0 0 4px}
#timeline .key{font-size:.85em;overflow-wrap:anywhere;line-height:1.25}#timeline svg{width:100%;height:36px;display:block;background:#fafbfc}
#timeline .judged{fill:#2f5d9e}#timeline .failed{fill:#c0392b}#timeline .skipped{fill:#8cc9a6}#timeline .band{fill:#f6dd9c;opacity:.7}
#timeline line{vector-effect:non-scaling-stroke}#timeline .grid{stroke:#e3e8ee}#timeline .base{stroke:#c5cdd6}
#timeline .detected{stroke:#b03a2e;stroke-width:2}#timeline .recovered{stroke:#1e7f4f;stroke-width:2}#timeline .signal line{stroke:#6c3fb5;stroke-width:2;stroke-dasharray:3 2}#timeline .signal polygon{fill:#6c3fb5}
#timeline .ticks{position:relative;height:1.4em;font-size:.8em;color:#5b6675}#timeline .ticks span{position:absolute;top:0;white-space:nowrap}
#timeline .axis .key{color:#5b6675}
.badge{display:inline-block;font-size:.75em;padding:0 5px;border-radius:4px;background:#f6dd9c;color:#6b4c00}
.episodes{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px}
.episode{border:1px solid #dde3ea;border-left:4px solid #b03a2e;border-radius:8px;padding:10px 12px}.episode.recovered{border-left-color:#1e7f4f}
.episode h3{overflow-wrap:anywhere}.episode dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 10px;margin:6px 0}.episode dt{color:#5b6675}.episode dd{margin:0}
details{margin:6px 0}summary{cursor:pointer;color:#2f5d9e}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{padding:5px 8px;border-bottom:1px solid #e6ebf0;text-align:right;white-space:nowrap;vertical-align:top}th{font-weight:600}
th.t,td.t{text-align:left}td.wrap{white-space:normal;min-width:16em}td.key{white-space:normal;overflow-wrap:anywhere;min-width:10em}
tr.decisive td{background:#fff4d6}code{font-size:.92em}
.caps{white-space:pre-line}time{white-space:nowrap}
@media (max-width:600px){body{padding:10px}#chart text{font-size:18px}#chart text.minor{display:none}#timeline .lane{grid-template-columns:1fr;gap:2px}#timeline .axis .key{display:none}td.wrap{min-width:9em}}
`;

/**
 * The incident view, one self-contained file (inline CSS and SVG; no script, font or fetch):
 * the range in UTC and local time, totals, skips by reason in words, charged and saved per
 * period, a timeline of judged and skipped calls per key with its stuck episodes, each episode
 * (detected, signalled, recovered, and why), per key, per judge kind and per model. Every name
 * from the ledger is escaped, and shown with its control characters made visible.
 */
export function renderHtml(r: Report, o: HtmlOptions = {}): string {
  const times = new Times(o.timeZone);
  const t = r.totals;
  const d = r.detail ?? NO_DETAIL;
  const since = Date.parse(r.range.since);
  const until = Date.parse(r.range.until);
  const decisions = t.calls_judged + t.calls_failed + t.calls_skipped;
  const episodes = r.sessions.flatMap((s) => s.episodes.map((e) => ({ key: s.session_key, e })));
  const ongoing = episodes.filter((x) => x.e.ended === null).length;
  const signals = episodes.flatMap((x) => x.e.signals);
  const delivered = signals.filter((s) => s.status === "delivered").length;

  const header = html`<h1>judge-guard report</h1>
<dl class="range" id="range">
<dt>UTC</dt><dd><time datetime="${r.range.since}">${times.utc(since)}</time> to <time datetime="${r.range.until}">${times.utc(until)}</time></dd>
<dt>local</dt><dd>${times.local(since)} to ${times.local(until)} <span class="muted">(${times.zone}, where the report was written)</span></dd>
${r.session_key === null ? null : html`<dt>key</dt><dd>${name(r.session_key)}</dd>`}
${r.config.mode === null ? null : html`<dt>mode</dt><dd>${r.config.mode}</dd>`}
<dt>ledger</dt><dd>${name(r.ledger)}</dd>
</dl>`;

  const cards = html`<div class="cards" id="totals">
<div class="card">charged<b>${formatUsd(t.charged_usd)}</b>${count(t.calls_judged + t.calls_failed)} calls judged${t.calls_failed > 0 ? ` (${count(t.calls_failed)} failed)` : ""}</div>
<div class="card">saved<b>${formatUsd(t.saved_usd)}</b>${count(t.calls_skipped)} calls skipped</div>
<div class="card">unguarded<b>${formatUsd(t.unguarded_usd)}</b>${percent(t.saved_usd, t.unguarded_usd)} saved</div>
<div class="card">stuck episodes<b>${count(episodes.length)}</b>${episodes.length === 0 ? "no key was stuck" : `${count(ongoing)} ongoing · ${count(delivered)}/${count(signals.length)} signals delivered`}</div>
</div>`;

  if (decisions === 0) {
    return page(
      r,
      html`${header}
<p class="empty" id="empty">No decisions in this range: the ledger holds no judge call between <time datetime="${r.range.since}">${times.utc(since)}</time> and <time datetime="${r.range.until}">${times.utc(until)} UTC</time>.</p>`,
    );
  }

  const episodesByKey = new Map(r.sessions.map((s) => [s.session_key, s.episodes]));
  const chart = costChart(r);
  const body = html`${header}${cards}
${sources(r)}
${skipReasons(r)}
<h2>Charged and saved per ${r.series.bucket} (UTC)</h2>
<p class="legend"><i class="c-charged"></i>charged<i class="c-saved"></i>saved</p>
${chart}
<details><summary>the numbers per ${r.series.bucket}</summary><div class="scroll"><table id="series">
<thead><tr><th class="t">${r.series.bucket} (UTC)</th><th>charged</th><th>saved</th></tr></thead>
<tbody>${r.series.points.map((p) => html`<tr><td class="t">${r.series.bucket === "hour" ? `${p.start.slice(0, 10)} ${p.start.slice(11, 16)}` : p.start.slice(0, 10)}</td><td>${formatUsd(p.charged_usd)}</td><td>${formatUsd(p.saved_usd)}</td></tr>`)}</tbody>
</table></div></details>
${timelineSection(d, episodesByKey, times)}
${episodesSection(episodes, d, times, until)}
<h2>Per session key</h2>
<div class="scroll"><table id="sessions">
<thead><tr><th class="t">session key</th><th>judged</th><th>skipped</th><th>charged</th><th>saved</th><th>budget used</th><th class="t">stuck episodes</th></tr></thead>
<tbody>
${r.sessions.map((s) => html`<tr><td class="key t">${name(s.session_key)}</td><td>${count(s.calls - s.skipped)}</td><td>${count(s.skipped)}</td><td>${formatUsd(s.charged_usd)}</td><td>${formatUsd(s.saved_usd)}</td><td>${budget(s)}</td><td class="t">${stuckCell(s, times)}</td></tr>\n`)}
</tbody></table></div>
<p class="caps" id="caps">${capsLine(r.config)}</p>
${namesTable("Per judge kind", "by-judge", r.by_judge, d.saved_by_judge, mixedSources(t))}
${namesTable("Per model", "by-model", r.by_model, d.saved_by_model, mixedSources(t))}
${estimates(r)}`;
  return page(r, body);
}

function page(r: Report, body: Markup): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${html`judge-guard report ${r.range.since.slice(0, 10)}${r.session_key === null ? "" : ` ${name(r.session_key)}`}`}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

function sources(r: Report): Markup | null {
  const t = r.totals;
  if (!mixedSources(t)) return null;
  return html`<p class="sources" id="cost-sources">charged: ${formatUsd(t.reported_usd)} reported by the judges (tokens x price of the same calls: ${formatUsd(t.reported_computed_usd)}) · ${formatUsd(t.computed_usd)} computed from tokens x price · ${formatUsd(t.estimated_usd)} estimated${t.unknown_source_usd > 0 ? ` · ${formatUsd(t.unknown_source_usd)} not recorded` : ""}</p>`;
}

function skipReasons(r: Report): Markup | null {
  const t = r.totals;
  const reasons = Object.entries(t.skipped_by_reason).sort((a, b) => b[1] - a[1]);
  if (reasons.length === 0) return null;
  const words = SKIP_REASON_TEXT as Readonly<Record<string, string>>;
  return html`<h2>Why calls were skipped</h2>
<div class="scroll"><table id="reasons">
<thead><tr><th class="t">reason</th><th class="t">what it means</th><th>calls</th><th>saved</th></tr></thead>
<tbody>${reasons.map(([reason, n]) => html`<tr><td class="t"><code>${name(reason)}</code></td><td class="t wrap">${words[reason] ?? "a reason this version does not know"}</td><td>${count(n)}</td><td>${formatUsd(t.saved_by_reason[reason] ?? 0)}</td></tr>`)}</tbody>
</table></div>`;
}

function timelineSection(
  d: ReportDetail,
  episodesByKey: ReadonlyMap<string, readonly EpisodeRow[]>,
  times: Times,
): Markup | null {
  const tl = d.timeline;
  if (tl === null) return null;
  return html`<h2>Calls per key over time (UTC)</h2>
<p class="legend"><i class="judged"></i>judged<i class="failed"></i>failed<i class="skipped"></i>skipped<i class="c-band"></i>stuck<i class="l-line c-detected"></i>detected<i class="l-line c-signal"></i>signal<i class="l-line c-recovered"></i>recovered</p>
<p class="note">One bar per ${duration(tl.step_ms)}, ${tl.keys.length === 1 ? "one key" : `${tl.keys.length} keys`}: those with a stuck episode first, then by charged and saved.${tl.keys_left_out > 0 ? ` ${count(tl.keys_left_out)} more keys are in the per-key table below.` : ""}</p>
${keyTimeline(tl, episodesByKey, times)}`;
}

const signalText = (s: EpisodeRow["signals"][number]): string =>
  `${s.channel}: ${s.status === "shadow" ? "not sent (shadow mode)" : s.status}${s.attempts === 1 ? "" : ` after ${s.attempts} attempts`}`;

function episodesSection(
  list: ReadonlyArray<{ key: string; e: EpisodeRow }>,
  d: ReportDetail,
  times: Times,
  until: number,
): Markup | null {
  if (list.length === 0) return null;
  const shown = [...list]
    .sort((a, b) => Date.parse(a.e.started) - Date.parse(b.e.started))
    .slice(0, MAX_EPISODES);
  const cards = shown.map(({ key, e }) => {
    const detail: EpisodeDetail | undefined = d.episodes[e.episode_id];
    const started = Date.parse(e.started);
    const ended = e.ended === null ? null : Date.parse(e.ended);
    const decisive = detail?.trail?.findLast((s) => s.stuck) ?? detail?.trail?.at(-1);
    return html`<section class="episode${ended === null ? "" : " recovered"}" data-episode="${e.episode_id}">
<h3>${name(key)} <span class="badge">${ended === null ? "ongoing" : "recovered"}</span></h3>
<dl>
<dt>detected</dt><dd>${times.cell(started)}</dd>
<dt>signal</dt><dd>${e.signals.length === 0 ? "none recorded" : e.signals.map((s) => html`<div>${signalText(s)} at ${times.cell(Date.parse(s.ts))}</div>`)}</dd>
<dt>recovered</dt><dd>${ended === null ? html`not yet: still stuck when the report was made${until > started ? ` (${duration(until - started)} by the end of the range)` : ""}` : html`${times.cell(ended)}after ${duration(ended - started)}`}</dd>
<dt>why</dt><dd>${decisive === undefined ? (EVIDENCE_TEXT[e.evidence] ?? e.evidence) : reasonsText(decisive)}</dd>
<dt>at reply</dt><dd>${count(e.detected_turn)}: canned reply <code>${e.fingerprint}</code>, seen ${count(e.repeats)} times</dd>
${detail === undefined ? null : html`<dt>skipped</dt><dd>${count(detail.calls_skipped)} calls, ${formatUsd(detail.saved_usd)} saved in this range</dd>`}
</dl>
${detail?.trail ? trailTable(detail.trail) : null}
</section>`;
  });
  return html`<h2>Stuck episodes</h2>
<div class="episodes" id="episodes">${cards}</div>
${list.length > shown.length ? html`<p class="note">${count(list.length - shown.length)} more episodes are not shown here; <code>judge-guard explain KEY</code> lists a key's episodes.</p>` : null}`;
}

function reasonsText(step: EvidenceStep): string {
  const words = REASON_TEXT as Readonly<Record<string, string>>;
  return step.reasons.map((r) => words[r] ?? r).join("; ");
}

const signed = (w: number | "reset"): string => (w === "reset" ? "reset" : w > 0 ? `+${w}` : String(w));

/** The evidence reply by reply, as `judge-guard explain` prints it: numbers and hashes, no text. */
function trailTable(trail: readonly EvidenceStep[]): Markup {
  return html`<details><summary>why it was judged stuck, reply by reply</summary><div class="scroll"><table class="trail">
<thead><tr><th>reply</th><th>chars</th><th class="t">fingerprint</th><th class="t">match</th><th>weight</th><th>score</th><th class="t">why</th></tr></thead>
<tbody>${trail.map((s) => html`<tr${s.stuck ? html` class="decisive"` : null}><td>${s.turn}</td><td>${count(s.chars)}</td><td class="t"><code>${s.fingerprint}</code></td><td class="t">${s.match === "new" ? "new" : `${s.match} of ${s.matchedTurn}`}</td><td>${signed(s.weight)}</td><td>${s.score}/${s.threshold}</td><td class="t wrap">${reasonsText(s)}</td></tr>`)}</tbody>
</table></div></details>`;
}

function budget(s: SessionRow): string {
  return s.budget.cap_usd === null
    ? formatUsd(s.budget.used_usd)
    : `${formatUsd(s.budget.used_usd)} / ${formatUsd(s.budget.cap_usd)}`;
}

function stuckCell(s: SessionRow, times: Times): string {
  return s.episodes
    .map((e) => {
      const sent = e.signals.filter((x) => x.status === "delivered").length;
      const state = e.ended === null ? "ongoing" : "recovered";
      return `${state} since ${times.utc(Date.parse(e.started)).slice(11)} UTC (${sent}/${e.signals.length} signalled)`;
    })
    .join("; ");
}

function namesTable(
  title: string,
  id: string,
  judged: readonly TokenRow[],
  saved: readonly SavedRow[],
  mixed: boolean,
): Markup | null {
  const names = [...new Set([...judged.map((x) => x.name), ...saved.map((x) => x.name)])];
  if (names.length === 0) return null;
  const byName = new Map(judged.map((x) => [x.name, x]));
  const savedBy = new Map(saved.map((x) => [x.name, x]));
  const rows = names
    .map((n) => ({ n, j: byName.get(n), s: savedBy.get(n) }))
    .sort(
      (a, b) =>
        (b.j?.charged_usd ?? 0) + (b.s?.saved_usd ?? 0) - ((a.j?.charged_usd ?? 0) + (a.s?.saved_usd ?? 0)),
    );
  const money = mixed ? ["reported", "computed", "estimate"] : [];
  return html`<h2>${title}</h2>
<div class="scroll"><table id="${id}">
<thead><tr><th class="t">name</th><th>judged</th><th>skipped</th><th>input</th><th>output</th><th>cache read</th><th>cache write</th>${money.map((m) => html`<th>${m}</th>`)}<th>charged</th><th>saved</th></tr></thead>
<tbody>${rows.map(({ n, j, s }) => html`<tr><td class="t">${name(n)}</td><td>${count(j?.calls ?? 0)}</td><td>${count(s?.skipped ?? 0)}</td><td>${count(j?.input_tokens ?? 0)}</td><td>${count(j?.output_tokens ?? 0)}</td><td>${count(j?.cache_read_tokens ?? 0)}</td><td>${count(j?.cache_write_tokens ?? 0)}</td>${mixed ? [j?.reported_usd, j?.computed_usd, j?.estimated_usd].map((v) => html`<td>${formatUsd(v ?? 0)}</td>`) : null}<td>${formatUsd(j?.charged_usd ?? 0)}</td><td>${formatUsd(s?.saved_usd ?? 0)}</td></tr>`)}</tbody>
</table></div>`;
}

function estimates(r: Report): Markup | null {
  const e = r.estimates;
  if (e.calls === 0) return null;
  return html`<p class="note" id="estimates">Estimates: ${count(e.calls)} calls reserved ${formatUsd(e.reserved_usd)} and settled at ${formatUsd(e.charged_usd)} (ratio ${e.ratio ?? "n/a"}, mean error ${formatUsd(e.mean_abs_error_usd ?? 0)} a call).</p>`;
}
