// Report scale: a ledger of one million decisions (30 days, 2,000 session keys, a stuck key
// among them) and the time to build the report over it, against a full scan of the decisions
// table (SELECT sum over every row) in the same run, the floor for anything that reads all rows.
// The rows are written through the SQLite store's own recordDecision (the guard's write path),
// batched in large transactions so the set-up takes seconds, not the hours of real traffic.
import Database from "better-sqlite3";
import { SqliteStore } from "../dist/index.js";
import { buildReport } from "../dist/report/report.js";
import { fmt, rng, table, tempDir } from "./lib.mjs";

const ROWS = Number(process.env.BENCH_REPORT_ROWS ?? 1_000_000);
const DAYS = 30;
const END = Date.parse("2026-11-24T00:00:00Z");

function build(path) {
  const store = new SqliteStore(path, { backgroundCheckpoints: false });
  const r = rng(42);
  const judges = ["observation_extraction", "consolidation", "quality_assessment", "safety_gate"];
  const t0 = process.hrtime.bigint();
  const BATCH = 50_000;
  for (let done = 0; done < ROWS; done += BATCH) {
    store.atomically(() => {
      for (let i = done; i < Math.min(ROWS, done + BATCH); i++) {
        const stuck = i % 50 === 0;
        const ts = END - DAYS * 86_400_000 + Math.floor((i / ROWS) * DAYS * 86_400_000);
        const charged = stuck ? 0 : 2000 + Math.floor(r() * 30_000);
        store.recordDecision({
          ts,
          sessionKey: stuck ? "cli:cli:local" : `slack:C${Math.floor(r() * 2000)}`,
          judge: judges[i % judges.length],
          model: i % 7 === 0 ? "claude-haiku-4-5" : "claude-sonnet-4-6",
          decision: stuck ? "skipped" : "judged",
          reason: stuck ? "stuck_session" : null,
          shadow: false,
          reservedMicros: stuck ? 0 : charged + 500,
          chargedMicros: charged,
          savedMicros: stuck ? 20_000 : 0,
          inputTokens: stuck ? 0 : 1500,
          outputTokens: stuck ? 0 : 400,
          cacheReadTokens: 0,
          cacheWriteTokens: 0,
          turns: 10,
          transcriptChars: 4000,
          transcriptHash: "0123456789abcdef0123456789abcdef",
          durationMs: 1200,
          episodeId: null,
        });
      }
    });
  }
  store.close();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function timed(fn) {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export async function run() {
  const tmp = tempDir();
  const path = `${tmp.dir}/ledger.db`;
  const buildS = build(path);
  const scanMs = timed(() => {
    const db = new Database(path, { readonly: true });
    db.prepare("SELECT count(*), sum(charged_micros) FROM decisions").get();
    db.close();
  });
  const cases = [
    ["last 24 hours", { since: END - 86_400_000, until: END }],
    ["last 7 days", { since: END - 7 * 86_400_000, until: END }],
    ["all 30 days", { since: END - 30 * 86_400_000, until: END }],
    ["30 days, one key", { since: END - 30 * 86_400_000, until: END, sessionKey: "cli:cli:local" }],
  ];
  const rows = cases.map(([name, o]) => {
    const ms = timed(() => buildReport(path, o));
    return {
      range: name,
      "report ms": fmt(ms, 0),
      "full scan ms": fmt(scanMs, 0),
      "ratio to full scan": fmt(ms / scanMs, 2),
    };
  });
  tmp.remove();
  console.log(
    `\n## report over a ledger of ${ROWS.toLocaleString("en-US")} decisions (written in ${fmt(buildS, 1)} s)`,
  );
  table(rows);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
