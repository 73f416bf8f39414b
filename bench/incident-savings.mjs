// Scenario 6: stuck-incident savings. The bundled Phantom-like incident replayed unguarded
// (every recorded call is made and paid at its recorded usage) and guarded (judge-guard decides
// first), in the same run: judge USD and tokens, as ratios.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_PRICES, PriceTable, replay } from "../dist/index.js";
import { openLines } from "../dist/replay/replay.js";
import { fmt, table, tempDir } from "./lib.mjs";

const FILE = fileURLToPath(new URL("../examples/phantom-incident.jsonl.gz", import.meta.url));

export async function run() {
  const prices = new PriceTable(DEFAULT_PRICES);
  // Unguarded: every line is a call, charged at its usage.
  let unguardedUsd = 0;
  let unguardedTokens = 0;
  const usageByLine = [];
  for await (const text of (await openLines(FILE)).lines) {
    const l = JSON.parse(text);
    const u = {
      inputTokens: l.usage.input_tokens,
      outputTokens: l.usage.output_tokens,
      cacheReadTokens: l.usage.cache_read_input_tokens ?? 0,
      cacheWriteTokens: l.usage.cache_creation_input_tokens ?? 0,
    };
    const tokens = u.inputTokens + u.outputTokens + u.cacheReadTokens + u.cacheWriteTokens;
    usageByLine.push(tokens);
    unguardedUsd += prices.costMicros(l.model, u) / 1e6;
    unguardedTokens += tokens;
  }
  // Guarded: the same traffic through the guard.
  const tmp = tempDir();
  let guardedTokens = 0;
  const t0 = process.hrtime.bigint();
  const summary = await replay(
    (await openLines(FILE)).lines,
    { ledger: join(tmp.dir, "ledger.db"), logger: "silent" },
    {
      onDecision: (d) => {
        if (d.decision === "judged") guardedTokens += usageByLine[d.line - 1];
      },
    },
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  tmp.remove();
  const rows = [
    {
      "": "unguarded",
      "judge USD": fmt(unguardedUsd, 2),
      "judge tokens": unguardedTokens.toLocaleString("en-US"),
      calls: usageByLine.length,
    },
    {
      "": "guarded",
      "judge USD": fmt(summary.spent_usd, 2),
      "judge tokens": guardedTokens.toLocaleString("en-US"),
      calls: summary.judged,
    },
    {
      "": "guarded / unguarded",
      "judge USD": fmt(summary.spent_usd / unguardedUsd, 3),
      "judge tokens": fmt(guardedTokens / unguardedTokens, 3),
      calls: fmt(summary.judged / usageByLine.length, 3),
    },
  ];
  console.log(
    `\n## stuck-incident savings (examples/phantom-incident.jsonl.gz; replay took ${fmt(seconds, 2)} s)`,
  );
  table(rows);
  const stuck = summary.stuck_sessions[0];
  if (stuck)
    console.log(
      `stuck key ${stuck.session_key} detected at line ${stuck.detected_line}; ${stuck.skipped_calls} calls skipped; ${summary.signals} signal`,
    );
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
