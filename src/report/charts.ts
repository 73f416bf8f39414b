import { formatUsd } from "../util/money.js";
import type { Timeline } from "./detail.js";
import { html, type Markup, name, type Times } from "./markup.js";
import type { EpisodeRow, Report } from "./report.js";

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** Money ticks from 0 to a round top, with one number of decimals for all of them. */
export function moneyAxis(max: number): { ticks: number[]; labels: string[] } {
  if (!(max > 0)) return { ticks: [0, 0.01], labels: ["$0.00", "$0.01"] };
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((n) => n * mag >= raw * (1 - 1e-9)) ?? 10) * mag;
  const n = Math.max(1, Math.ceil(max / step - 1e-9));
  const ticks = Array.from({ length: n + 1 }, (_, i) => i * step);
  let decimals = 0;
  while (decimals < 6 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6)
    decimals++;
  if (step < 1) decimals = Math.max(2, decimals);
  const labels = ticks.map(
    (v) =>
      `$${v.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals })}`,
  );
  return { ticks, labels };
}

/**
 * Charged (dark) and saved (light) per period as grouped bars on a time axis (periods with no
 * decisions keep their place), in SVG drawn here: no script, no fonts, no fetch. Null when the
 * series is empty.
 */
export function costChart(r: Report): Markup | null {
  const { bucket, points } = r.series;
  if (points.length === 0) return null;
  const width = bucket === "hour" ? HOUR : DAY;
  const first = Date.parse(points[0]!.start);
  const slots = Math.round((Date.parse(points.at(-1)!.start) - first) / width) + 1;
  const max = Math.max(...points.map((p) => Math.max(p.charged_usd, p.saved_usd)));
  const axis = moneyAxis(max);
  const top = axis.ticks.at(-1)!;
  const W = 640;
  const H = 240;
  const longest = Math.max(...axis.labels.map((l) => l.length));
  // Room for the labels at the larger size a phone shows them in (see the page's style).
  const pad = { left: 14 + longest * 10.5, right: 8, top: 14, bottom: 32 };
  const plotW = W - pad.left - pad.right;
  const plotH = H - pad.top - pad.bottom;
  const slot = plotW / slots;
  const bar = Math.max(1, Math.min(24, slot / 2 - 1));
  const y = (v: number) => pad.top + plotH - (v / top) * plotH;
  const base = pad.top + plotH;
  const every = Math.ceil(slots / 12);
  const label = (ms: number) => {
    const iso = new Date(ms).toISOString();
    return bucket === "hour" ? `${iso.slice(11, 13)}:00` : iso.slice(5, 10);
  };
  const bars = points.map((p) => {
    const ms = Date.parse(p.start);
    const i = Math.round((ms - first) / width);
    const x = pad.left + i * slot + slot / 2 - bar;
    const when = bucket === "hour" ? `${p.start.slice(0, 10)} ${label(ms)} UTC` : p.start.slice(0, 10);
    return html`<g class="period" data-start="${p.start}"><title>${when}: charged ${formatUsd(p.charged_usd)}, saved ${formatUsd(p.saved_usd)}</title><rect class="charged" x="${x.toFixed(1)}" y="${y(p.charged_usd).toFixed(1)}" width="${bar.toFixed(1)}" height="${(base - y(p.charged_usd)).toFixed(1)}"/><rect class="saved" x="${(x + bar).toFixed(1)}" y="${y(p.saved_usd).toFixed(1)}" width="${bar.toFixed(1)}" height="${(base - y(p.saved_usd)).toFixed(1)}"/></g>`;
  });
  // Every other label is minor: a phone, which draws them larger, shows only the others.
  const shown = Array.from({ length: slots }, (_, i) => i).filter((i) => i % every === 0);
  const xLabels = shown.map(
    (i, n) =>
      html`<text${shown.length > 6 && n % 2 === 1 ? html` class="minor"` : null} x="${(pad.left + i * slot + slot / 2).toFixed(1)}" y="${H - 8}" text-anchor="middle">${label(first + i * width)}</text>`,
  );
  const yTicks = axis.ticks.map(
    (v, i) =>
      html`<line class="grid" x1="${pad.left.toFixed(1)}" x2="${W - pad.right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/><text x="${(pad.left - 6).toFixed(1)}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${axis.labels[i]!}</text>`,
  );
  return html`<svg id="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="USD charged and saved per ${bucket} (UTC)" xmlns="http://www.w3.org/2000/svg">${yTicks}<line x1="${pad.left.toFixed(1)}" y1="${base}" x2="${W - pad.right}" y2="${base}" class="axis"/>${bars}${xLabels}</svg>`;
}

const TICK_STEPS = [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10_080].map((m) => m * 60_000);

/** Time ticks for a span: at most 8, on round UTC times. */
export function timeTicks(start: number, end: number): Array<{ ms: number; label: string }> {
  const step = TICK_STEPS.find((s) => (end - start) / s < 8) ?? 30 * DAY;
  const out: Array<{ ms: number; label: string }> = [];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) {
    const iso = new Date(t).toISOString();
    out.push({
      ms: t,
      label: step >= DAY || iso.slice(11, 16) === "00:00" ? iso.slice(5, 10) : iso.slice(11, 16),
    });
  }
  return out;
}

const LANE_W = 1000;
const LANE_H = 36;

/**
 * Per key, calls judged (dark), failed (red) and skipped (light) per column of time, stacked;
 * behind them each stuck episode as a band, with a line where it was detected, a mark where a
 * signal went out, and a line where it recovered. Key names are HTML beside each lane (they
 * wrap and stay legible on a phone); the lanes stretch to the width.
 */
export function keyTimeline(
  t: Timeline,
  episodes: ReadonlyMap<string, readonly EpisodeRow[]>,
  times: Times,
): Markup {
  const start = Date.parse(t.start);
  const end = Date.parse(t.end);
  const x = (ms: number) => Math.min(LANE_W, Math.max(0, ((ms - start) / (end - start)) * LANE_W));
  const colW = LANE_W / t.columns;
  const most = Math.max(1, ...t.keys.flatMap((k) => k.cells.map((c) => c.judged + c.failed + c.skipped)));
  const unit = (LANE_H - 4) / most;
  const ticks = timeTicks(start, end);
  const grid = ticks.map(
    (k) =>
      html`<line class="grid" x1="${x(k.ms).toFixed(1)}" x2="${x(k.ms).toFixed(1)}" y1="0" y2="${LANE_H}"/>`,
  );
  const lanes = t.keys.map((k) => {
    const mine = episodes.get(k.session_key) ?? [];
    const bands = mine.map((e) => {
      const from = Date.parse(e.started);
      const to = e.ended === null ? end : Date.parse(e.ended);
      const inSpan = e.signals.filter((s) => Date.parse(s.ts) >= start && Date.parse(s.ts) <= end);
      const signals = inSpan.map((s) => {
        const sx = x(Date.parse(s.ts)).toFixed(1);
        return html`<g class="signal"><title>signal ${s.channel}: ${s.status} at ${times.utc(Date.parse(s.ts), true)} UTC</title><line x1="${sx}" x2="${sx}" y1="0" y2="${LANE_H}"/><polygon points="${sx},9 ${(Number(sx) - 7).toFixed(1)},0 ${(Number(sx) + 7).toFixed(1)},0"/></g>`;
      });
      return html`<g class="episode"><title>stuck ${times.utc(from, true)} UTC to ${e.ended === null ? "the end (ongoing)" : `${times.utc(to, true)} UTC`}</title><rect class="band" x="${x(from).toFixed(1)}" y="0" width="${Math.max(1, x(to) - x(from)).toFixed(1)}" height="${LANE_H}"/>${from >= start ? html`<line class="detected" x1="${x(from).toFixed(1)}" x2="${x(from).toFixed(1)}" y1="0" y2="${LANE_H}"/>` : null}${e.ended !== null && to <= end ? html`<line class="recovered" x1="${x(to).toFixed(1)}" x2="${x(to).toFixed(1)}" y1="0" y2="${LANE_H}"/>` : null}</g>${signals}`;
    });
    const cells = k.cells.map((c) => {
      const cx = c.column * colW + colW * 0.1;
      const w = Math.max(0.5, colW * 0.8);
      let y = LANE_H;
      const part = (n: number, cls: string) => {
        if (n === 0) return null;
        const h = Math.max(1.5, n * unit);
        y -= h;
        return html`<rect class="${cls}" x="${cx.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${h.toFixed(1)}"/>`;
      };
      const from = start + c.column * t.step_ms;
      const bits = [`${c.judged} judged`, c.failed > 0 ? `${c.failed} failed` : "", `${c.skipped} skipped`];
      return html`<g class="cell"><title>${times.utc(from)} UTC, ${String(t.step_ms / 60_000)} min: ${bits.filter(Boolean).join(", ")}</title>${part(c.judged, "judged")}${part(c.failed, "failed")}${part(c.skipped, "skipped")}</g>`;
    });
    return html`<div class="lane" data-key="${name(k.session_key)}"><div class="key">${name(k.session_key)}${mine.length > 0 ? html` <span class="badge">stuck</span>` : null}</div><svg viewBox="0 0 ${LANE_W} ${LANE_H}" preserveAspectRatio="none" role="img" aria-label="calls judged and skipped over time" xmlns="http://www.w3.org/2000/svg">${grid}${bands}<line class="base" x1="0" x2="${LANE_W}" y1="${LANE_H}" y2="${LANE_H}"/>${cells}</svg></div>`;
  });
  const labels = ticks.map((k) => {
    const p = (x(k.ms) / LANE_W) * 100;
    const shift = p < 3 ? "0" : p > 97 ? "-100%" : "-50%";
    return html`<span style="left:${p.toFixed(2)}%;transform:translateX(${shift})">${k.label}</span>`;
  });
  return html`<div id="timeline"><div class="lanes">${lanes}<div class="lane axis"><div class="key">UTC</div><div class="ticks">${labels}</div></div></div></div>`;
}
