import { describe, expect, it } from "vitest";
import { moneyAxis, timeTicks } from "../../src/report/charts.js";
import { duration, html, Times } from "../../src/report/markup.js";

describe("moneyAxis: round ticks from $0, one format for all", () => {
  it.each([
    [3.2, ["$0", "$1", "$2", "$3", "$4"]],
    [0.0966, ["$0.000", "$0.025", "$0.050", "$0.075", "$0.100"]],
    [20.65, ["$0", "$10", "$20", "$30"]],
    [0.4574, ["$0.00", "$0.20", "$0.40", "$0.60"]],
    [0.000_31, ["$0.0000", "$0.0001", "$0.0002", "$0.0003", "$0.0004"]],
    [1234, ["$0", "$500", "$1,000", "$1,500"]],
    [1, ["$0.00", "$0.25", "$0.50", "$0.75", "$1.00"]],
    // Nothing charged or saved: an axis still, never NaN or a clipped $0.005000.
    [0, ["$0.00", "$0.01"]],
  ])("max %s: %j", (max, labels) => {
    const axis = moneyAxis(max);
    expect(axis.labels).toEqual(labels);
    expect(axis.ticks.at(-1)!).toBeGreaterThanOrEqual(max);
    expect(new Set(axis.labels.map((l) => l.split(".")[1]?.length ?? 0)).size).toBe(1);
  });
});

describe("timeTicks: at most 8, on round UTC times", () => {
  const at = (iso: string) => Date.parse(iso);
  it.each([
    [
      "2026-11-20T08:00:00Z",
      "2026-11-20T20:00:00Z",
      ["08:00", "10:00", "12:00", "14:00", "16:00", "18:00", "20:00"],
    ],
    ["2026-11-20T08:00:00Z", "2026-11-20T10:00:00Z", ["08:00", "08:30", "09:00", "09:30", "10:00"]],
    [
      "2026-11-20T18:00:00Z",
      "2026-11-21T06:00:00Z",
      ["18:00", "20:00", "22:00", "11-21", "02:00", "04:00", "06:00"],
    ],
    ["2026-11-01T00:00:00Z", "2026-11-05T00:00:00Z", ["11-01", "11-02", "11-03", "11-04", "11-05"]],
  ])("%s to %s", (from, to, labels) => {
    expect(timeTicks(at(from), at(to)).map((t) => t.label)).toEqual(labels);
  });
});

describe("html: every value escaped, nested markup kept", () => {
  it.each([
    ["<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"],
    [`"'&`, "<p>&quot;&#39;&amp;</p>"],
    [42, "<p>42</p>"],
    [null, "<p></p>"],
    [["<a>", html`<b>${"<c>"}</b>`], "<p>&lt;a&gt;<b>&lt;c&gt;</b></p>"],
  ])("%j", (value, out) => {
    expect(String(html`<p>${value}</p>`)).toBe(out);
  });

  it("escapes inside attributes", () => {
    expect(String(html`<div data-key="${`" onmouseover="x`}"></div>`)).toBe(
      '<div data-key="&quot; onmouseover=&quot;x"></div>',
    );
  });
});

describe("Times: UTC, and local time labelled with its offset that day", () => {
  it.each([
    ["Europe/Berlin", "2026-11-20T09:47:19.550Z", "2026-11-20 10:47:19 UTC+01:00"],
    ["Europe/Berlin", "2026-07-01T09:47:19Z", "2026-07-01 11:47:19 UTC+02:00"],
    ["America/New_York", "2026-11-20T03:00:00Z", "2026-11-19 22:00:00 UTC-05:00"],
    ["Asia/Kolkata", "2026-11-20T00:00:00Z", "2026-11-20 05:30:00 UTC+05:30"],
    ["UTC", "2026-11-20T00:00:00Z", "2026-11-20 00:00:00 UTC+00:00"],
  ])("%s %s", (zone, iso, local) => {
    const t = new Times(zone);
    expect(t.local(Date.parse(iso), true)).toBe(local);
    expect(t.utc(Date.parse(iso), true)).toBe(`${iso.slice(0, 10)} ${iso.slice(11, 19)}`);
  });
});

describe("duration", () => {
  it.each([
    [20_000, "20 s"],
    [35 * 60_000, "35 min"],
    [14 * 3_600_000 + 13 * 60_000, "14 h 13 min"],
    [3 * 86_400_000 + 4 * 3_600_000, "3 d 4 h"],
  ])("%s ms: %s", (ms, text) => {
    expect(duration(ms)).toBe(text);
  });
});
