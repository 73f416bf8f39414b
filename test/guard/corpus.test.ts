import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createGuard, type GuardOptions } from "../../src/index.js";

interface Turn {
  user: string;
  assistant: string;
  facts?: { cost_usd: number; session_id: string; outcome: string; tools_used: string[] };
}
interface Case {
  name: string;
  kind: "stuck" | "healthy" | "recovers";
  family: string;
  turns: Turn[];
  canned_from?: number;
  recovered_at?: number;
  episodes?: Array<{ canned_from: number; recovered_at: number }>;
}

const corpus = JSON.parse(
  readFileSync(new URL("../fixtures/corpus/sessions.json", import.meta.url), "utf8"),
) as Case[];

/** Runs a case turn by turn, one judge call per turn over the cumulative transcript, as Phantom does. */
async function play(c: Case, options: GuardOptions = {}): Promise<boolean[]> {
  const guard = createGuard({ ledger: ":memory:", logger: "silent", verdictTtlMs: 0, ...options });
  const skipped: boolean[] = [];
  for (let i = 0; i < c.turns.length; i++) {
    const last = c.turns[i]!;
    const outcome = await guard.run(
      {
        judge: "observation_extraction",
        model: "claude-sonnet-4-6",
        session: {
          session_key: `corpus:${c.name}`,
          user_messages: c.turns.slice(0, i + 1).map((t) => t.user),
          assistant_messages: c.turns.slice(0, i + 1).map((t) => t.assistant),
          ...(last.facts
            ? {
                cost_usd: last.facts.cost_usd,
                session_id: last.facts.session_id,
                outcome: last.facts.outcome,
                tools_used: last.facts.tools_used,
              }
            : {}),
        },
      },
      async () => ({ inputTokens: 1000, outputTokens: 300 }),
    );
    skipped.push(outcome.status === "skipped" && outcome.reason === "stuck_session");
  }
  await guard.close();
  return skipped;
}

const episodesOf = (c: Case) =>
  c.episodes ??
  (c.canned_from === undefined
    ? []
    : [{ canned_from: c.canned_from, recovered_at: c.recovered_at ?? c.turns.length }]);

describe.each([
  ["with Phantom's patterns built in", {}],
  ["with no patterns at all", { builtinPatterns: false }],
])("corpus %s", (_label, options: GuardOptions) => {
  it.each(corpus.filter((c) => c.kind === "healthy").map((c) => [c.name, c] as const))(
    "healthy %s: never skipped",
    async (_name, c) => {
      const skipped = await play(c, options);
      expect(skipped.map((s, i) => (s ? i : -1)).filter((i) => i >= 0)).toEqual([]);
    },
  );

  it.each(corpus.filter((c) => c.kind !== "healthy").map((c) => [c.name, c] as const))(
    "%s: skipped by the 3rd canned reply, judged again once it recovers",
    async (_name, c) => {
      const skipped = await play(c, options);
      for (const ep of episodesOf(c)) {
        // Requests for the 3rd canned reply onwards must not reach the judge.
        for (let i = ep.canned_from + 2; i < ep.recovered_at; i++) expect(skipped[i], `turn ${i}`).toBe(true);
        // A healthy reply re-arms the key: judging resumes with that request.
        if (ep.recovered_at < c.turns.length)
          expect(skipped[ep.recovered_at], `turn ${ep.recovered_at}`).toBe(false);
      }
      // Nothing before the first canned reply is skipped.
      const first = episodesOf(c)[0]!.canned_from;
      expect(skipped.slice(0, first).some(Boolean)).toBe(false);
    },
  );
});
