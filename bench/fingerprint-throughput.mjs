// Scenario 3: fingerprinting throughput. MB/s of reply text normalised and fingerprinted, next to
// plain SHA-256 (node:crypto) over the same bytes, the reference limit.
import { createHash } from "node:crypto";
import { signReply } from "../dist/index.js";
import { conversation, fmt, table } from "./lib.mjs";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

function corpora() {
  const { replies } = conversation(4000, 3);
  const canned = Array.from(
    { length: 4000 },
    (_, i) =>
      `Still processing your previous request (elapsed ${i % 60}m${i % 7}s, request ${((i * 2654435761) >>> 0).toString(16)}). Please wait.`,
  );
  const unicode = replies.map((r) => `${r.replace(/ /g, "\u00a0")} \u2014 r\u00e9sum\u00e9 \u201cdone\u201d`);
  return { "prose (ASCII)": replies, "canned with volatile tokens": canned, "prose (non-ASCII)": unicode };
}

function mbPerSec(texts, fn) {
  const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
  for (const t of texts) fn(t); // warm-up
  let best = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (const t of texts) fn(t);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    best = Math.max(best, bytes / 1e6 / s);
  }
  return best;
}

export async function run() {
  const rows = [];
  for (const [name, texts] of Object.entries(corpora())) {
    const guard = mbPerSec(texts, (t) => signReply(t).fingerprint);
    const sha = mbPerSec(texts, (t) => createHash("sha256").update(t).digest("hex"));
    rows.push({
      corpus: name,
      "fingerprint MB/s": fmt(guard),
      "sha256 MB/s": fmt(sha),
      ratio: fmt(guard / sha, 2),
    });
  }
  console.log("\n## fingerprinting throughput (best of rounds; ratio = fingerprint / plain SHA-256)");
  table(rows);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
