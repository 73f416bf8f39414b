// Replays a detection corpus (test/fixtures/corpus/*) through a guard, turn by turn, as Phantom
// calls its judges (once per turn, over the cumulative transcript), with budgets lifted so that
// only detection decides. Shared by bench/detection-quality.mjs and the corpus tests.
//
// Definitions (docs: test/fixtures/corpus/README.md, "Measuring"):
// - delay: canned replies judged before the first skipped one in an episode (0 = the first
//   canned reply was skipped, 1 = caught at the 2nd, 2 = caught at the 3rd). "Caught within 3
//   canned replies" is delay <= 2.
// - false-positive session: a healthy case with any turn skipped as stuck, or a stuck/recovers
//   case with a skip before its first canned turn or between episodes.
// - recovery: the first healthy turn after an episode is judged (not skipped).
// - known pass: every stuck/recovers case is played a second time, under a new session key, on
//   the same guard: its canned lines are then in the registry.

const MODEL = "claude-sonnet-4-6";
const INPUT_PER_M = 3;
const OUTPUT_PER_M = 15;

/** What one judge call over a transcript of `chars` characters costs, in USD (prompt + transcript). */
export function callCost(chars) {
  return ((1000 + chars / 4) * INPUT_PER_M + 300 * OUTPUT_PER_M) / 1e6;
}

export function episodesOf(c) {
  if (c.episodes) return c.episodes;
  if (c.canned_from === undefined) return [];
  return [{ canned_from: c.canned_from, recovered_at: c.recovered_at ?? c.turns.length }];
}

/** Plays one case on `guard` under `key`; returns per turn whether it was skipped and its cost. */
export async function playCase(guard, c, key) {
  const users = [];
  const replies = [];
  const turns = [];
  let chars = 0;
  for (const t of c.turns) {
    if (typeof t.user === "string") {
      users.push(t.user);
      chars += t.user.length;
    }
    replies.push(t.assistant);
    chars += t.assistant.length;
    const f = t.facts;
    const outcome = await guard.run(
      {
        judge: "observation_extraction",
        model: MODEL,
        session: {
          session_key: key,
          user_messages: users.slice(),
          assistant_messages: replies.slice(),
          ...(f
            ? { cost_usd: f.cost_usd, session_id: f.session_id, outcome: f.outcome, tools_used: f.tools_used }
            : {}),
        },
      },
      async () => ({ inputTokens: Math.round(1000 + chars / 4), outputTokens: 300 }),
    );
    turns.push({
      skipped: outcome.status === "skipped" && outcome.reason === "stuck_session",
      cost: callCost(chars),
    });
  }
  return turns;
}

/** Scores one played case against its labels. */
export function scoreCase(c, turns) {
  const eps = episodesOf(c);
  const canned = new Array(turns.length).fill(false);
  for (const e of eps) for (let i = e.canned_from; i < e.recovered_at; i++) canned[i] = true;
  const falseSkips = [];
  for (let i = 0; i < turns.length; i++) if (turns[i].skipped && !canned[i]) falseSkips.push(i);
  const episodes = eps.map((e) => {
    let delay = null;
    for (let i = e.canned_from; i < e.recovered_at; i++)
      if (turns[i].skipped) {
        delay = i - e.canned_from;
        break;
      }
    const recovered = e.recovered_at < turns.length ? !turns[e.recovered_at].skipped : null;
    return { delay, recovered, cannedTurns: e.recovered_at - e.canned_from };
  });
  let cannedCost = 0;
  let savedCost = 0;
  let wastedCost = 0;
  let totalCost = 0;
  for (let i = 0; i < turns.length; i++) {
    totalCost += turns[i].cost;
    if (canned[i]) {
      cannedCost += turns[i].cost;
      if (turns[i].skipped) savedCost += turns[i].cost;
    } else if (turns[i].skipped) wastedCost += turns[i].cost;
  }
  return {
    name: c.name,
    kind: c.kind,
    tier: c.tier ?? "core",
    family: c.family,
    falseSkips,
    episodes,
    cannedCost,
    savedCost,
    wastedCost,
    totalCost,
  };
}

/**
 * Evaluates a corpus. `makeGuard()` returns a fresh guard (one for the whole corpus, so that the
 * known pass sees what the first pass registered).
 */
export async function evaluate(corpus, makeGuard) {
  const guard = await makeGuard();
  const first = [];
  for (const c of corpus) first.push(scoreCase(c, await playCase(guard, c, `eval:${c.name}`)));
  const known = [];
  for (const c of corpus) {
    if (c.kind === "healthy") continue;
    known.push(scoreCase(c, await playCase(guard, c, `eval-known:${c.name}`)));
  }
  await guard.close();
  return { first, known };
}

const pct = (n, d) => (d === 0 ? "-" : `${((100 * n) / d).toFixed(1)}%`);

/** Summary figures of scored cases, by tier. */
export function summarize(scored) {
  const out = {};
  for (const tier of ["core", "hard"]) {
    const eps = scored.filter((s) => s.kind !== "healthy" && s.tier === tier).flatMap((s) => s.episodes);
    const within = (d) => eps.filter((e) => e.delay !== null && e.delay <= d).length;
    out[tier] = {
      episodes: eps.length,
      delay0: within(0),
      delay1: within(1),
      delay2: within(2),
      delay3: within(3),
      caught: within(Number.POSITIVE_INFINITY),
    };
  }
  const healthy = scored.filter((s) => s.kind === "healthy");
  const fpSessions = scored.filter((s) => s.falseSkips.length > 0);
  const recoveries = scored.flatMap((s) => s.episodes).filter((e) => e.recovered !== null);
  const sum = (f) => scored.reduce((a, s) => a + f(s), 0);
  return {
    ...out,
    healthySessions: healthy.length,
    falsePositiveSessions: fpSessions.length,
    falsePositiveNames: fpSessions.map((s) => s.name),
    recoveries: recoveries.length,
    recoveredWithin1: recoveries.filter((e) => e.recovered).length,
    cannedCostUsd: sum((s) => s.cannedCost),
    savedCostUsd: sum((s) => s.savedCost),
    wastedCostUsd: sum((s) => s.wastedCost),
    totalCostUsd: sum((s) => s.totalCost),
  };
}

/** Rows for a table: one per tier, plus the false-positive and savings figures. */
export function describeSummary(label, s) {
  const rows = [];
  for (const tier of ["core", "hard"]) {
    const t = s[tier];
    if (t.episodes === 0) continue;
    rows.push({
      corpus: label,
      tier,
      episodes: t.episodes,
      "delay<=1": pct(t.delay1, t.episodes),
      "delay<=2 (3rd reply)": pct(t.delay2, t.episodes),
      "delay<=3": pct(t.delay3, t.episodes),
      caught: pct(t.caught, t.episodes),
    });
  }
  return {
    rows,
    falsePositives: `${s.falsePositiveSessions} of ${s.healthySessions} healthy sessions (plus stuck cases' healthy turns)`,
    recovery: `${s.recoveredWithin1}/${s.recoveries} recoveries judged at the first healthy reply`,
    saved: `${pct(s.savedCostUsd, s.cannedCostUsd)} of canned-phase judge spend saved ($${s.savedCostUsd.toFixed(2)} of $${s.cannedCostUsd.toFixed(2)}); $${s.wastedCostUsd.toFixed(4)} of healthy judging skipped`,
  };
}

/** Episodes that missed a target, for a failure list: name, tier, delay. */
export function misses(scored, maxDelay) {
  const out = [];
  for (const s of scored) {
    if (s.falseSkips.length > 0) out.push(`${s.name}: false skip at turns ${s.falseSkips.join(",")}`);
    s.episodes.forEach((e, i) => {
      const limit = s.tier === "hard" ? Number.POSITIVE_INFINITY : maxDelay;
      if (e.delay === null || e.delay > limit)
        out.push(
          `${s.name}${s.episodes.length > 1 ? `#${i + 1}` : ""} (${s.tier}): delay ${e.delay ?? "never"}`,
        );
      if (e.recovered === false)
        out.push(`${s.name}: not judged at its first healthy turn after episode ${i + 1}`);
    });
  }
  return out;
}
