// The README's screenshots of the HTML report (docs/img/): the bundled incident replayed into a
// temporary ledger, reported for its day, and a day with no decisions, each opened in headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core) and cut to what it shows.
// Local time is Europe/Berlin, so the report shows local time apart from UTC.
//
//   npm run build && node scripts/report-screenshots.mjs
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("../", import.meta.url));
const bin = join(root, "dist/cli/main.js");
const out = join(root, "docs/img");
const dir = mkdtempSync(join(tmpdir(), "judge-guard-shots-"));
const env = { ...process.env, TZ: "Europe/Berlin" };
for (const k of Object.keys(env)) if (k.startsWith("JUDGE_GUARD_")) delete env[k];
const run = (...args) => execFileSync(process.execPath, [bin, ...args], { env, stdio: "pipe" });

try {
  const ledger = join(dir, "ledger.db");
  run("replay", join(root, "examples/phantom-incident.jsonl.gz"), "--db", ledger, "--no-progress");
  const report = (name, since, until) => {
    const path = join(dir, `${name}.html`);
    run("report", "--db", ledger, "--since", since, "--until", until, "--format", "html", "--out", path);
    return path;
  };
  const shots = [
    // The incident view down to its stuck episode; the tables below it are the text report's.
    { file: "report-incident.png", html: report("incident", "2026-11-20", "2026-11-21"), until: "#episodes" },
    { file: "report-empty.png", html: report("empty", "2026-11-22", "2026-11-23"), until: "#empty" },
  ];
  mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    for (const s of shots) {
      const page = await browser.newPage({ viewport: { width: 960, height: 800 } });
      await page.goto(`file://${s.html}`);
      const end = await page.locator(s.until).boundingBox();
      const height = Math.ceil(end.y + end.height + 16);
      const png = join(out, s.file);
      await page.screenshot({ path: png, clip: { x: 0, y: 0, width: 960, height }, fullPage: true });
      await page.close();
      console.log(`wrote ${png}`);
    }
  } finally {
    await browser.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
