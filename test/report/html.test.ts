import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const BIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const INCIDENT = fileURLToPath(new URL("../../examples/phantom-incident.jsonl.gz", import.meta.url));
const ARTEFACTS = fileURLToPath(new URL("../../test-artifacts/", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
// CI installs Chromium and sets this, so a missing browser fails there instead of skipping.
const requireChromium = process.env.JUDGE_GUARD_REQUIRE_CHROMIUM === "1";

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("JUDGE_GUARD_")));
  return new Promise((resolve) =>
    execFile(process.execPath, [BIN, ...args], { env }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    ),
  );
}

let dir: string;
let html: string;
let htmlPath: string;
let report: { series: { points: unknown[] }; sessions: unknown[] };
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "judge-guard-html-"));
  const ledger = join(dir, "ledger.db");
  expect((await cli(["replay", INCIDENT, "--db", ledger, "--no-progress"])).code).toBe(0);
  const range = ["--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z"];
  htmlPath = join(dir, "report.html");
  const r = await cli(["report", "--db", ledger, ...range, "--format", "html", "--out", htmlPath]);
  expect(r).toMatchObject({ code: 0, stdout: `wrote ${htmlPath}\n` });
  html = readFileSync(htmlPath, "utf8");
  report = JSON.parse((await cli(["report", "--db", ledger, ...range, "--format", "json"])).stdout);
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("judge-guard report --format html", () => {
  it("is one self-contained file: no script, no stylesheet or image fetched, no external URL", () => {
    expect(html).not.toMatch(/<script|<link|<img|<iframe|@import|url\(/i);
    // The only URL is the SVG namespace, which is never fetched.
    const urls = html.match(/https?:\/\/[^\s"'<>)]+/g) ?? [];
    expect(urls).toEqual(["http://www.w3.org/2000/svg"]);
  });

  it("has the chart (a group per period) and the per-key table (a row per key)", () => {
    expect((html.match(/<g class="period"/g) ?? []).length).toBe(report.series.points.length);
    const tbody = html.slice(html.indexOf("<tbody>"), html.indexOf("</tbody>"));
    expect((tbody.match(/<tr>/g) ?? []).length).toBe(report.sessions.length);
    expect(html).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
  });

  it("needs --out", async () => {
    const r = await cli(["report", "--db", "x.db", "--format", "html"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--format html needs --out FILE/);
  });

  it.skipIf(!requireChromium && !existsSync(CHROMIUM))(
    "renders in headless Chromium: the chart has a visible bar per period, on a phone-sized screen too",
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
      try {
        for (const [name, viewport] of [
          ["report", { width: 1024, height: 900 }],
          ["report-phone", { width: 390, height: 844 }],
        ] as const) {
          const page = await browser.newPage({ viewport });
          const requests: string[] = [];
          page.on("request", (req) => requests.push(req.url()));
          await page.goto(`file://${htmlPath}`);
          const periods = await page.locator("#chart g.period").count();
          expect(periods).toBe(report.series.points.length);
          // Every period draws something: a charged or a saved bar with a real height on screen.
          // (Runs in the page; typed structurally, this project compiles without the DOM library.)
          type Box = { getBoundingClientRect(): { height: number } };
          type Group = { querySelectorAll(selector: string): ArrayLike<Box> };
          const heights = await page.$$eval("#chart g.period", (groups) =>
            (groups as unknown as Group[]).map((g) =>
              Math.max(
                ...Array.from(g.querySelectorAll("rect")).map((r) => r.getBoundingClientRect().height),
              ),
            ),
          );
          expect(heights.filter((h) => h > 0)).toHaveLength(periods);
          const chartBox = await page.locator("#chart").boundingBox();
          expect(chartBox!.width).toBeLessThanOrEqual(viewport.width);
          expect(requests.every((u) => u.startsWith("file://"))).toBe(true);
          mkdirSync(ARTEFACTS, { recursive: true });
          const png = join(ARTEFACTS, `${name}.png`);
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
