import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REASON_TEXT } from "../../src/detection/reasons.js";
import type { Report } from "../../src/report/report.js";
import { SKIP_REASON_TEXT } from "../../src/report/words.js";
import { count } from "../../src/util/format.js";
import { formatUsd as usd } from "../../src/util/money.js";
import { cli, ensureBuilt } from "../helpers/cli.js";
import { CANNED, healthyReply } from "../helpers/replies.js";

const INCIDENT = fileURLToPath(new URL("../../examples/phantom-incident.jsonl.gz", import.meta.url));
const ARTEFACTS = fileURLToPath(new URL("../../test-artifacts/", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
// CI installs Chromium and sets this, so a missing browser fails there instead of skipping.
const requireChromium = process.env.JUDGE_GUARD_REQUIRE_CHROMIUM === "1";
const RANGE = ["--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z"];
/** The zone the reports are written in: local time then differs from UTC (by one hour in November). */
const TZ = { TZ: "Europe/Berlin" };

/** A session key a hostile caller could send: markup, a script, quotes, and a bidi override. */
const HOSTILE = `<script>alert(1)</script><img src=x onerror=alert(2)>"'&\u202e`;
const HOSTILE_SHOWN = `<script>alert(1)</script><img src=x onerror=alert(2)>"'&\\u202e`;

/**
 * Recorded traffic of one key that gets stuck and recovers: five answers, eight canned replies,
 * four answers, five minutes apart, each judged twice (the replay format of examples/README.md).
 */
function stuckAndRecovered(key: string): string {
  const t0 = Date.parse("2026-11-20T08:00:00Z");
  const users: string[] = [];
  const replies: string[] = [];
  const lines: string[] = [];
  const plan = [..."hhhhh", ..."ssssssss", ..."hhhh"];
  plan.forEach((kind, i) => {
    users.push(`question ${i}: how is item ${i * 3} doing?`);
    replies.push(kind === "h" ? healthyReply(i) : CANNED);
    for (const [j, judge] of ["observation_extraction", "consolidation"].entries()) {
      const ts = t0 + i * 300_000 + j * 1000;
      lines.push(
        JSON.stringify({
          ts: new Date(ts).toISOString(),
          judge,
          model: "claude-sonnet-4-6",
          session: {
            session_id: kind === "h" ? "sdk_0123456789abcdef01234567" : "",
            session_key: key,
            user_id: "U1",
            user_messages: [...users],
            assistant_messages: [...replies],
            tools_used: [],
            files_tracked: [],
            outcome: "success",
            cost_usd: kind === "h" ? 0.05 : 0,
            started_at: new Date(t0).toISOString(),
            ended_at: new Date(ts).toISOString(),
          },
          usage: { input_tokens: 800, output_tokens: 300 },
        }),
      );
    }
  });
  return `${lines.join("\n")}\n`;
}

interface Written {
  path: string;
  html: string;
  report: Report;
}

let dir: string;
/** The bundled incident: six keys, one stuck from 09:47 to the end. */
let incident: Written;
/** A hostile key that gets stuck and recovers. */
let hostile: Written;
/** A range of the incident's ledger with no decisions. */
let empty: Written;

async function write(ledger: string, name: string, range: string[], stderr: RegExp = /^$/): Promise<Written> {
  const path = join(dir, `${name}.html`);
  const r = await cli(["report", "--db", ledger, ...range, "--format", "html", "--out", path], { env: TZ });
  expect(r).toMatchObject({ code: 0, stdout: `wrote ${path}\n` });
  expect(r.stderr).toMatch(stderr);
  const json = await cli(["report", "--db", ledger, ...range, "--format", "json"]);
  return { path, html: readFileSync(path, "utf8"), report: JSON.parse(json.stdout) as Report };
}

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "judge-guard-html-"));
  const ledger = join(dir, "incident.db");
  expect((await cli(["replay", INCIDENT, "--db", ledger, "--no-progress"])).code).toBe(0);
  const traffic = join(dir, "hostile.jsonl");
  writeFileSync(traffic, stuckAndRecovered(HOSTILE));
  const hostileLedger = join(dir, "hostile.db");
  expect((await cli(["replay", traffic, "--db", hostileLedger, "--no-progress"])).code).toBe(0);
  [incident, hostile, empty] = await Promise.all([
    write(ledger, "incident", RANGE),
    write(hostileLedger, "hostile", RANGE),
    // An empty range says on stderr what range the ledger holds (test/cli/report.test.ts).
    write(
      ledger,
      "empty",
      ["--since", "2026-11-22T00:00:00Z", "--until", "2026-11-23T00:00:00Z"],
      /^judge-guard: report: no decisions from 2026-11-22T00:00:00Z .* holds 1,076 decisions from 2026-11-20T08:00:49Z/,
    ),
  ]);
}, 90_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const entities: Record<string, string> = {
  "&lt;": "<",
  "&gt;": ">",
  "&quot;": '"',
  "&#39;": "'",
  "&amp;": "&",
};
const decode = (s: string) => s.replace(/&(lt|gt|quot|#39|amp);/g, (e) => entities[e]!);
/** The element with this id, as markup (up to its own closing tag, past nested ones of its kind). */
function byId(html: string, id: string): string {
  const at = html.indexOf(`id="${id}"`);
  expect(at, `#${id}`).toBeGreaterThan(-1);
  const start = html.lastIndexOf("<", at);
  const name = /^<(\w+)/.exec(html.slice(start))![1]!;
  const tags = new RegExp(`<(/?)${name}[\\s>]`, "g");
  tags.lastIndex = start;
  let depth = 0;
  for (let m = tags.exec(html); m !== null; m = tags.exec(html)) {
    depth += m[1] === "/" ? -1 : 1;
    if (depth === 0) return html.slice(start, m.index);
  }
  throw new Error(`#${id} is not closed`);
}
const rows = (table: string) => table.slice(table.indexOf("<tbody>")).match(/<tr[ >].*?<\/tr>/gs) ?? [];
/** What a reader sees, roughly: inline tags dropped, others a space. */
const text = (fragment: string) =>
  decode(
    fragment
      .replace(/<\/?(code|span|time)\b[^>]*>/g, "")
      .replace(/<[^>]+>/g, " ")
      .replace(/\s+/g, " "),
  ).trim();

describe("judge-guard report --format html", () => {
  it("is one self-contained file: no script, no stylesheet or image fetched, no external URL", () => {
    for (const { html } of [incident, hostile, empty]) {
      expect(html).not.toMatch(/<script|<link|<img|<iframe|<object|<embed|@import|url\(|javascript:/i);
      // No event handler attribute in any tag (a `<` in text and a `"` in a value are escaped).
      expect(html.replace(/"[^"]*"/g, '""')).not.toMatch(/<[^>]*\son\w+\s*=/i);
      // The only URL is the SVG namespace, which is never fetched.
      const urls = new Set(html.match(/https?:\/\/[^\s"'<>)]+/g) ?? []);
      urls.delete("http://www.w3.org/2000/svg");
      expect([...urls]).toEqual([]);
      expect(html).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
      expect(html).not.toMatch(/NaN|Infinity|undefined|\[object /);
    }
  });

  it("carries the table's totals, skip reasons, keys, judge kinds, models, periods, estimates and caps", () => {
    const { html, report: r } = incident;
    const t = r.totals;
    expect(text(byId(html, "totals"))).toContain(
      `charged ${usd(t.charged_usd)} ${count(t.calls_judged + t.calls_failed)} calls judged`,
    );
    expect(text(byId(html, "totals"))).toContain(
      `saved ${usd(t.saved_usd)} ${count(t.calls_skipped)} calls skipped`,
    );
    expect(text(byId(html, "totals"))).toContain(`unguarded ${usd(t.unguarded_usd)}`);
    expect(rows(byId(html, "reasons")).map(text)).toEqual([
      `stuck_session ${SKIP_REASON_TEXT.stuck_session} 698 ${usd(t.saved_by_reason.stuck_session!)}`,
    ]);
    expect(rows(byId(html, "sessions")).map((row) => text(row).split(" ").slice(0, 5).join(" "))).toEqual(
      r.sessions.map(
        (s) =>
          `${s.session_key} ${count(s.calls - s.skipped)} ${count(s.skipped)} ${usd(s.charged_usd)} ${usd(s.saved_usd)}`,
      ),
    );
    for (const [id, list] of [
      ["by-judge", r.by_judge],
      ["by-model", r.by_model],
    ] as const) {
      const shown = rows(byId(html, id)).map(text);
      expect(shown).toHaveLength(list.length);
      for (const x of list) {
        expect(shown.find((row) => row.startsWith(`${x.name} `))).toMatch(
          new RegExp(
            `^\\S+ ${count(x.calls)} [\\d,]+ ${count(x.input_tokens)} ${count(x.output_tokens)} .* \\${usd(x.charged_usd)} \\$`,
          ),
        );
      }
    }
    // The skipped side per judge kind and model: they add up to the calls skipped.
    const skippedOf = (id: string) =>
      rows(byId(html, id)).reduce((n, row) => n + Number(text(row).split(" ")[2]!.replace(/,/g, "")), 0);
    expect(skippedOf("by-judge")).toBe(t.calls_skipped);
    expect(skippedOf("by-model")).toBe(t.calls_skipped);
    expect(rows(byId(html, "series"))).toHaveLength(r.series.points.length);
    expect(text(byId(html, "estimates"))).toContain(
      `${count(r.estimates.calls)} calls reserved ${usd(r.estimates.reserved_usd)}`,
    );
    expect(text(byId(html, "caps"))).toMatch(/^budget used \/ cap: session cap \$5\.00/);
  });

  it("gives the range in UTC and in the local time of the machine that wrote it, named", () => {
    const range = text(byId(incident.html, "range"));
    expect(range).toContain("UTC 2026-11-20 00:00 to 2026-11-21 00:00");
    expect(range).toContain("local 2026-11-20 01:00 UTC+01:00 to 2026-11-21 01:00 UTC+01:00 (Europe/Berlin");
  });

  it("shows each stuck episode: detected, signalled and recovered, in UTC and local time, and why, in words", () => {
    const [hs] = hostile.report.sessions;
    const e = hs!.episodes[0]!;
    expect(e.ended).not.toBeNull();
    const card = text(byId(hostile.html, "episodes"));
    const both = (iso: string) => {
      const ms = Date.parse(iso);
      const local = new Date(ms + 3_600_000).toISOString(); // Berlin in November
      return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC ${local.slice(0, 10)} ${local.slice(11, 19)} UTC+01:00 local`;
    };
    expect(card).toContain(`detected ${both(e.started)}`);
    expect(card).toContain(`signal replay: delivered at ${both(e.signals[0]!.ts)}`);
    const minutes = Math.round((Date.parse(e.ended!) - Date.parse(e.started)) / 60_000);
    expect(card).toContain(`recovered ${both(e.ended!)} after ${minutes} min`);
    expect(card).toContain(`why ${REASON_TEXT.known_canned}`);
    expect(card).toContain(
      `at reply ${e.detected_turn}: canned reply ${e.fingerprint}, seen ${e.repeats} times`,
    );
    expect(card).toContain(`skipped ${count(hs!.skipped)} calls, ${usd(hs!.saved_usd)} saved`);
    // The evidence reply by reply (numbers, hashes and words; never the replies themselves).
    const trail = rows(
      byId(hostile.html, "episodes").slice(byId(hostile.html, "episodes").indexOf("<table")),
    );
    expect(trail.length).toBe(e.detected_turn);
    expect(hostile.html).not.toContain(CANNED);
    expect(hostile.html).not.toContain(healthyReply(0));

    const ongoing = text(byId(incident.html, "episodes"));
    expect(ongoing).toContain("recovered not yet: still stuck when the report was made");
  });

  it("draws a timeline lane per key, stuck keys first, whose bars add up to the key's calls", () => {
    const { html, report: r } = incident;
    const lanes = [
      ...byId(html, "timeline").matchAll(/<div class="lane" data-key="([^"]*)">(.*?)<\/svg><\/div>/gs),
    ];
    expect(lanes.map((l) => decode(l[1]!))).toEqual([
      "cli:cli:local",
      ...r.sessions.filter((s) => s.session_key !== "cli:cli:local").map((s) => s.session_key),
    ]);
    for (const [, key, lane] of lanes) {
      const s = r.sessions.find((x) => x.session_key === decode(key!))!;
      const sum = (what: string) =>
        [...lane!.matchAll(new RegExp(`(\\d+) ${what}`, "g"))].reduce((n, m) => n + Number(m[1]), 0);
      expect(sum("judged")).toBe(s.calls - s.skipped);
      expect(sum("skipped")).toBe(s.skipped);
      expect((lane!.match(/class="episode"/g) ?? []).length).toBe(s.episodes.length);
    }
  });

  it("shows a hostile session key as text everywhere, with its bidi override made visible", () => {
    const { html } = hostile;
    expect(html).not.toContain("<script>");
    expect(html).not.toContain("<img");
    expect(html).not.toContain("\u202e");
    const escaped =
      "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&quot;&#39;&amp;\\u202e";
    // In the timeline (its label and data-key), the episode and the per-key table.
    expect(html.split(escaped).length - 1).toBeGreaterThanOrEqual(4);
    expect(text(rows(byId(html, "sessions"))[0]!)).toMatch(
      new RegExp(`^${HOSTILE_SHOWN.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")} `),
    );
  });

  it("says when a range has no decisions, and draws no empty chart", () => {
    const { html } = empty;
    expect(text(byId(html, "empty"))).toBe(
      "No decisions in this range: the ledger holds no judge call between 2026-11-22 00:00 and 2026-11-23 00:00 UTC.",
    );
    expect(html).not.toContain("<svg");
    expect(html).not.toContain('id="timeline"');
  });

  it("needs --out", async () => {
    const r = await cli(["report", "--db", "x.db", "--format", "html"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--format html needs --out FILE/);
  });

  it.skipIf(!requireChromium && !existsSync(CHROMIUM))(
    "renders in headless Chromium: bars, lanes and labels inside their boxes, on a phone too; a hostile key stays text",
    async () => {
      const { chromium } = await import("playwright-core");
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
      // Runs in the page; typed structurally, this project compiles without the DOM library.
      type Box = { left: number; right: number; top: number; bottom: number; width: number; height: number };
      type El = {
        getBoundingClientRect(): Box;
        querySelectorAll(selector: string): ArrayLike<El>;
        textContent: string | null;
      };
      try {
        mkdirSync(ARTEFACTS, { recursive: true });
        for (const [shot, written, viewport] of [
          ["report", incident, { width: 1024, height: 900 }],
          ["report-phone", incident, { width: 390, height: 844 }],
          ["report-hostile", hostile, { width: 1024, height: 900 }],
          ["report-empty", empty, { width: 1024, height: 600 }],
        ] as const) {
          const page = await browser.newPage({ viewport });
          const requests: string[] = [];
          const dialogs: string[] = [];
          page.on("request", (req) => requests.push(req.url()));
          page.on("dialog", (d) => {
            dialogs.push(d.message());
            void d.dismiss();
          });
          await page.goto(`file://${written.path}`);
          expect(await page.locator("script, img, iframe, object, embed").count()).toBe(0);
          const points = written.report.series.points.length;
          expect(await page.locator("#chart g.period").count()).toBe(points);
          if (points > 0) {
            // Every period draws something: a charged or a saved bar with a real height on screen.
            const heights = await page.$$eval("#chart g.period", (groups) =>
              (groups as unknown as El[]).map((g) =>
                Math.max(
                  ...Array.from(g.querySelectorAll("rect")).map((r) => r.getBoundingClientRect().height),
                ),
              ),
            );
            expect(heights.filter((h) => h > 0)).toHaveLength(points);
            // No label is clipped: each visible one lies inside the chart.
            const clipped = await page.$eval("#chart", (svg) => {
              const box = (svg as unknown as El).getBoundingClientRect();
              return Array.from((svg as unknown as El).querySelectorAll("text"))
                .map((t) => ({ t: t.textContent, b: t.getBoundingClientRect() }))
                .filter(({ b }) => b.width > 0)
                .filter(
                  ({ b }) =>
                    b.left < box.left || b.right > box.right || b.top < box.top || b.bottom > box.bottom,
                )
                .map(({ t }) => t);
            });
            expect(clipped).toEqual([]);
            const chartBox = await page.locator("#chart").boundingBox();
            expect(chartBox!.width).toBeLessThanOrEqual(viewport.width);
            expect(await page.locator("#timeline .lane[data-key]").count()).toBe(
              written.report.sessions.length,
            );
            const laneBox = await page.locator("#timeline svg").first().boundingBox();
            expect(laneBox!.width).toBeGreaterThan(viewport.width / 2);
            expect(laneBox!.width).toBeLessThanOrEqual(viewport.width);
          } else {
            expect(await page.locator("#empty").isVisible()).toBe(true);
          }
          if (written === hostile) {
            const key = await page.locator("#sessions tbody td").first().textContent();
            expect(key).toBe(HOSTILE_SHOWN);
          }
          expect(dialogs).toEqual([]);
          expect(requests.every((u) => u.startsWith("file://"))).toBe(true);
          const png = join(ARTEFACTS, `${shot}.png`);
          await page.screenshot({ path: png, fullPage: true });
          expect(statSync(png).size).toBeGreaterThan(10_000);
          await page.close();
        }
      } finally {
        await browser.close();
      }
    },
    60_000,
  );
});
