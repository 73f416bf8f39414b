import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_KEYS } from "../../src/report/detail.js";
import { buildReport, type Report } from "../../src/report/report.js";
import { cli, ensureBuilt } from "../helpers/cli.js";

const INCIDENT = fileURLToPath(new URL("../../examples/phantom-incident.jsonl.gz", import.meta.url));
const since = Date.parse("2026-11-20T00:00:00Z");
const until = Date.parse("2026-11-21T00:00:00Z");

let dir: string;
let ledger: string;
let report: Report;
beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "judge-guard-detail-"));
  ledger = join(dir, "ledger.db");
  expect((await cli(["replay", INCIDENT, "--db", ledger, "--no-progress"])).code).toBe(0);
  report = buildReport(ledger, { since, until, detail: true });
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cents = (usd: number) => Math.round(usd * 100);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe("buildReport({ detail: true }): what the HTML incident view reads", () => {
  it("is read only when asked", () => {
    expect(buildReport(ledger, { since, until }).detail).toBeUndefined();
  });

  it("episodes carry their evidence, the reply they were detected at and when each signal went out", () => {
    const [e] = report.sessions.find((s) => s.session_key === "cli:cli:local")!.episodes;
    expect(e).toMatchObject({ evidence: "known_canned", detected_turn: expect.any(Number), ended: null });
    expect(e!.signals).toEqual([{ ts: e!.started, channel: "replay", status: "delivered", attempts: 1 }]);
  });

  it("timeline: each key's columns add up to its calls, stuck keys first, over the series' span", () => {
    const t = report.detail!.timeline!;
    expect(t.start).toBe(report.series.points[0]!.start);
    expect(Date.parse(t.end)).toBe(Date.parse(report.series.points.at(-1)!.start) + 3_600_000);
    expect(t.columns).toBeLessThanOrEqual(96);
    expect(t.columns * t.step_ms).toBeGreaterThanOrEqual(Date.parse(t.end) - Date.parse(t.start));
    expect(t.keys[0]!.session_key).toBe("cli:cli:local");
    expect(t.keys).toHaveLength(report.sessions.length);
    expect(t.keys_left_out).toBe(0);
    for (const k of t.keys) {
      const s = report.sessions.find((x) => x.session_key === k.session_key)!;
      expect(sum(k.cells.map((c) => c.judged + c.failed))).toBe(s.calls - s.skipped);
      expect(sum(k.cells.map((c) => c.skipped))).toBe(s.skipped);
      expect(k.cells.every((c) => c.column >= 0 && c.column < t.columns)).toBe(true);
    }
  });

  it("savings per judge kind and per model add up to the totals", () => {
    const d = report.detail!;
    for (const rows of [d.saved_by_judge, d.saved_by_model]) {
      expect(sum(rows.map((r) => r.skipped))).toBe(report.totals.calls_skipped);
      expect(cents(sum(rows.map((r) => r.saved_usd)))).toBe(cents(report.totals.saved_usd));
    }
    expect(d.saved_by_model.map((r) => r.name)).toEqual(["claude-sonnet-4-6"]);
  });

  it("per episode: the calls it skipped in the range, and its evidence reply by reply", () => {
    const [e] = report.sessions.find((s) => s.session_key === "cli:cli:local")!.episodes;
    const d = report.detail!.episodes[e!.episode_id]!;
    expect(d.calls_skipped).toBe(698);
    expect(cents(d.saved_usd)).toBe(cents(report.totals.saved_usd));
    expect(d.trail!.at(-1)).toMatchObject({ turn: e!.detected_turn, stuck: true, reasons: ["known_canned"] });
  });

  it("an empty range has no timeline; a narrow one keeps at most MAX_KEYS lanes", () => {
    const empty = buildReport(ledger, { since: until, until: until + 86_400_000, detail: true });
    expect(empty.detail).toEqual({ timeline: null, saved_by_judge: [], saved_by_model: [], episodes: {} });
    expect(MAX_KEYS).toBeGreaterThanOrEqual(report.sessions.length);
    const one = buildReport(ledger, { since, until, sessionKey: "telegram:5512:main", detail: true });
    expect(one.detail!.timeline!.keys.map((k) => k.session_key)).toEqual(["telegram:5512:main"]);
  });
});
