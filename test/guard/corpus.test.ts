import { existsSync, readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { type CorpusCase, evaluate, type ScoredCase } from "../../scripts/corpus-eval.mjs";
import { createGuard, type GuardOptions } from "../../src/index.js";

/**
 * The bundled corpora, replayed turn by turn as Phantom calls its judges (one call per turn over
 * the cumulative transcript), with budgets lifted so that only detection decides. The targets
 * are issue 12's: every core stuck session caught by its 3rd canned reply, and by its 2nd once
 * its line is known; at least 90% of hard ones caught; no healthy session skipped; judging
 * resumed at the first healthy reply after an episode. The held-out corpus was written apart
 * from the detector and is not tuned to (test/fixtures/corpus/heldout/README.md).
 */
const CORPORA = {
  v1: "../fixtures/corpus/sessions.json",
  dev: "../fixtures/corpus/dev/sessions.json",
  heldout: "../fixtures/corpus/heldout/sessions.json",
  probe: "../fixtures/corpus/probe/sessions.json",
} as const;

function load(path: string): CorpusCase[] {
  const url = new URL(path, import.meta.url);
  if (!existsSync(url))
    throw new Error(`corpus missing: ${url.pathname} (regenerate it with its generate.mjs)`);
  return JSON.parse(readFileSync(url, "utf8")) as CorpusCase[];
}

/**
 * Targets the detector misses, each for a reason docs/detection.md gives under "Limits". Each is
 * asserted to still miss (`it.fails`): one that starts to pass must leave this list, and a new
 * miss anywhere else fails the suite.
 */
const KNOWN_MISSES: Record<string, string> = {
  "dev/built-in patterns/healthy-openhands-negative-different-actions-text":
    "the agent replays two earlier steps verbatim after a new message, with no facts",
  "dev/no patterns/healthy-openhands-negative-different-actions-text":
    "the agent replays two earlier steps verbatim after a new message, with no facts",
  "dev/built-in patterns/stuck-openhands-condensation-text-2h10s":
    "three numbers change in every line and no facts: weighed as data, caught at the 7th",
  "dev/no patterns/stuck-openhands-condensation-text-2h10s":
    "three numbers change in every line and no facts: weighed as data, caught at the 7th",
  "probe/built-in patterns/healthy-oncall-ack-bot":
    "a paid, tool-calling 'Acknowledged. Paging on-call (alice).' to every alert reads as a paid canned loop",
  "probe/no patterns/healthy-oncall-ack-bot":
    "a paid, tool-calling 'Acknowledged. Paging on-call (alice).' to every alert reads as a paid canned loop",
  "heldout/no patterns/stuck-no-content-paid":
    "'(no content)' is shorter than the minimum reply; without built-in patterns nothing names it",
};
const limit = (corpus: string, variant: string, name: string) => KNOWN_MISSES[`${corpus}/${variant}/${name}`];
const test = (corpus: string, variant: string) => (name: string) =>
  limit(corpus, variant, name) === undefined ? it : it.fails;

const UNCAPPED: GuardOptions = { sessionBudgetUsd: 1e9, dailyBudgetUsd: 1e9, sessionMaxCalls: 1e9 };
const VARIANTS: Array<[string, GuardOptions]> = [
  ["built-in patterns", {}],
  ["no patterns", { builtinPatterns: false }],
];

describe.each(Object.entries(CORPORA))("corpus %s", (corpusName, path) => {
  const corpus = load(path);
  const healthy = corpus.filter((c) => c.kind === "healthy").map((c) => c.name);
  const core = corpus.filter((c) => c.kind !== "healthy" && (c.tier ?? "core") === "core").map((c) => c.name);
  const hard = corpus.filter((c) => c.kind !== "healthy" && c.tier === "hard").map((c) => c.name);

  describe.each(VARIANTS)("with %s", (variant, options) => {
    const the = test(corpusName, variant);
    let first: Map<string, ScoredCase>;
    let known: Map<string, ScoredCase>;
    beforeAll(async () => {
      const r = await evaluate(corpus, () =>
        createGuard({ ledger: ":memory:", logger: "silent", verdictTtlMs: 0, ...UNCAPPED, ...options }),
      );
      first = new Map(r.first.map((s) => [s.name, s]));
      known = new Map(r.known.map((s) => [s.name, s]));
    });

    for (const name of healthy) {
      the(name)(`healthy ${name}: never skipped${why(corpusName, variant, name)}`, () => {
        expect(first.get(name)!.falseSkips).toEqual([]);
      });
    }

    for (const name of core) {
      the(name)(
        `${name}: skipped by the 3rd canned reply (by the 2nd once the line is known), judged again when it recovers${why(corpusName, variant, name)}`,
        () => {
          for (const [pass, scored, limit] of [
            ["first", first, 2],
            ["known", known, 1],
          ] as const) {
            const s = scored.get(name)!;
            expect(s.falseSkips, `${pass} pass: skips outside the canned turns`).toEqual([]);
            for (const [i, e] of s.episodes.entries()) {
              expect(
                e.delay,
                `${pass} pass, episode ${i + 1}: canned replies judged before the first skip`,
              ).not.toBeNull();
              expect(e.delay!, `${pass} pass, episode ${i + 1}`).toBeLessThanOrEqual(limit);
              expect(
                e.recovered,
                `${pass} pass, episode ${i + 1}: the first healthy reply is judged`,
              ).not.toBe(false);
            }
          }
        },
      );
    }

    it.each(hard)("%s (hard): no skip outside its canned turns, judged again when it recovers", (name) => {
      const s = first.get(name)!;
      expect(s.falseSkips).toEqual([]);
      for (const e of s.episodes) expect(e.recovered).not.toBe(false);
    });

    it.runIf(hard.length > 0)("catches at least 90% of the hard sessions", () => {
      const missed = hard.filter((name) => first.get(name)!.episodes.some((e) => e.delay === null));
      expect(missed.length / hard.length, `missed: ${missed.join(", ")}`).toBeLessThanOrEqual(0.1);
    });
  });
});

function why(corpus: string, variant: string, name: string): string {
  const reason = limit(corpus, variant, name);
  return reason === undefined ? "" : ` (known limit, still missed: ${reason})`;
}
