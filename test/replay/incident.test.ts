import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { DEFAULT_PRICES, PriceTable, type ReplayDecision, replay } from "../../src/index.js";
import { CANNED } from "../helpers/replies.js";
import { useTempDir } from "../helpers/tmp.js";

const text = gunzipSync(
  readFileSync(new URL("../../examples/phantom-incident.jsonl.gz", import.meta.url)),
).toString("utf8");
const lines = text.split("\n").filter((l) => l !== "");
const prices = new PriceTable(DEFAULT_PRICES);

/** Ground truth from the file itself: which lines judge a canned reply, and what each cost. */
const truth = lines.map((l, i) => {
  const r = JSON.parse(l);
  const replies: string[] = r.session.assistant_messages;
  return {
    line: i + 1,
    key: r.session.session_key as string,
    canned: replies.at(-1) === CANNED,
    cannedSoFar: replies.filter((a) => a === CANNED).length,
    costMicros: prices.costMicros(r.model, {
      inputTokens: r.usage.input_tokens,
      outputTokens: r.usage.output_tokens,
      cacheReadTokens: r.usage.cache_read_input_tokens ?? 0,
      cacheWriteTokens: r.usage.cache_creation_input_tokens ?? 0,
    }),
  };
});

async function* iterate() {
  yield* lines;
}

describe.each([
  ["Phantom's canned lines known", {}],
  ["no canned patterns (detection from repeats alone)", { builtinPatterns: false }],
])("replaying the Phantom #25 incident, %s", (_name, options) => {
  const tmp = useTempDir();

  it("saves at least 99% of the stuck-phase judge spend, detects the key within 3 canned replies, signals once and skips no healthy session", async () => {
    const decisions: ReplayDecision[] = [];
    const summary = await replay(
      iterate(),
      { ...options, ledger: join(tmp(), "replay.db"), logger: "silent" },
      {
        onDecision: (d) => decisions.push(d),
      },
    );
    expect(decisions).toHaveLength(truth.length);

    const stuckPhase = truth.filter((t) => t.canned);
    const unguardedStuck = stuckPhase.reduce((a, t) => a + t.costMicros, 0);
    const spentStuck = stuckPhase.reduce((a, t) => a + Math.round(decisions[t.line - 1]!.cost_usd * 1e6), 0);
    expect(spentStuck / unguardedStuck).toBeLessThan(0.01);

    // Every request on the 3rd canned reply or later is skipped as stuck.
    for (const t of stuckPhase.filter((t) => t.cannedSoFar >= 3)) {
      expect(decisions[t.line - 1], `line ${t.line}`).toMatchObject({
        decision: "skipped",
        reason: "stuck_session",
      });
    }
    // Nothing else is skipped for being stuck or over budget.
    const wrongful = truth.filter((t) => !t.canned && decisions[t.line - 1]!.decision !== "judged");
    expect(wrongful).toEqual([]);

    expect(summary.stuck_sessions).toHaveLength(1);
    expect(summary.stuck_sessions[0]).toMatchObject({ session_key: "cli:cli:local" });
    expect(summary.signals).toBe(1);
    expect(summary.invalid).toBe(0);
    // The unguarded figure is the file's own cost, to the cent.
    expect(Math.round(summary.unguarded_usd * 100)).toBe(
      Math.round(truth.reduce((a, t) => a + t.costMicros, 0) / 1e4),
    );
  });
});
