// Detection quality on the bundled corpora: recall by delay, false-positive sessions, recovery
// and saved judge spend, for the guard with Phantom's patterns and with none (so that a pattern
// does not hide a weakness of the detector). Budgets are lifted: only detection decides.
//
//   node bench/detection-quality.mjs            # after npm run build
//   bun bench/detection-quality.mjs --src       # straight from src/, while developing
//   ... --misses [--delay N]                    # also list every missed target (delay > N, default 2)
//   ... --corpus dev,v1                         # pick corpora (v1, dev, heldout, probe)
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describeSummary, evaluate, misses, summarize } from "../scripts/corpus-eval.mjs";
import { UNCAPPED } from "./lib.mjs";

const CORPORA = {
  v1: "../test/fixtures/corpus/sessions.json",
  dev: "../test/fixtures/corpus/dev/sessions.json",
  heldout: "../test/fixtures/corpus/heldout/sessions.json",
  probe: "../test/fixtures/corpus/probe/sessions.json",
};

export function loadCorpora(names = Object.keys(CORPORA)) {
  const out = {};
  for (const name of names) {
    const path = fileURLToPath(new URL(CORPORA[name], import.meta.url));
    if (existsSync(path)) out[name] = JSON.parse(readFileSync(path, "utf8"));
  }
  return out;
}

export async function run(argv = []) {
  const src = argv.includes("--src");
  const at = argv.indexOf("--corpus");
  const names = at >= 0 ? argv[at + 1].split(",") : undefined;
  const { createGuard } = await import(src ? "../src/index.ts" : "../dist/index.js");
  const corpora = loadCorpora(names);
  const results = {};
  for (const [variant, extra] of [
    ["Phantom patterns", {}],
    ["no patterns", { builtinPatterns: false }],
  ]) {
    console.log(`\n## Detection quality, ${variant}\n`);
    const rows = [];
    const notes = [];
    for (const [name, corpus] of Object.entries(corpora)) {
      const makeGuard = () =>
        createGuard({ ledger: ":memory:", logger: "silent", verdictTtlMs: 0, ...UNCAPPED, ...extra });
      const { first, known } = await evaluate(corpus, makeGuard);
      const s = summarize(first);
      const k = summarize(known);
      const d = describeSummary(name, s);
      rows.push(...d.rows);
      const kd = describeSummary(`${name}, line known`, k);
      rows.push(...kd.rows);
      notes.push(`${name}: false positives ${d.falsePositives}; ${d.recovery}; ${d.saved}`);
      results[`${variant}/${name}`] = { first: s, known: k };
      if (argv.includes("--misses")) {
        const at = argv.indexOf("--delay");
        const delay = at >= 0 ? Number(argv[at + 1]) : 2;
        for (const m of misses(first, delay)) notes.push(`  miss ${name}: ${m}`);
        for (const m of misses(known, 1)) notes.push(`  miss ${name} (known): ${m}`);
      }
    }
    console.table(rows);
    for (const n of notes) console.log(n);
  }
  return results;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run(process.argv.slice(2));
