// Shared helpers for the benchmarks: timing, percentiles, machine info, result output.
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, freemem, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { mulberry32 } from "../scripts/rng.mjs";

/** Guard options with caps no benchmark reaches: they measure the guard's work, not refusals. */
export const UNCAPPED = { sessionBudgetUsd: 1e9, dailyBudgetUsd: 1e9, sessionMaxCalls: 1e9 };

export const now = () => process.hrtime.bigint();
export const us = (ns) => Number(ns) / 1000;

/** Percentile (nearest rank) of a sorted array of numbers. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** p50/p99/p99.9/mean of samples in microseconds. */
export function summarize(samplesUs) {
  const s = Float64Array.from(samplesUs).sort();
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return { n: s.length, mean, p50: percentile(s, 50), p99: percentile(s, 99), p999: percentile(s, 99.9) };
}

export function machine() {
  const c = cpus();
  return {
    node: process.version,
    cpu: c[0]?.model ?? "unknown",
    cores: c.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    freeGiB: Math.round(freemem() / 2 ** 30),
    platform: `${process.platform}-${process.arch}`,
  };
}

export function tempDir(prefix = "judge-guard-bench-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const fmt = (n, digits = 1) =>
  Number.isFinite(n)
    ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : String(n);

/** Prints a small aligned table. */
export function table(rows) {
  const cols = Object.keys(rows[0]);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padStart(width[i])).join("  ");
  console.log(line(cols));
  for (const r of rows) console.log(line(cols.map((c) => r[c])));
}

/** Deterministic PRNG (mulberry32). */
export const rng = mulberry32;

const WORDS =
  "the deploy pipeline failed on staging because the migration locked the orders table for too long so I split it into batches and added an index on created_at then reran the job which finished in four minutes and the api latency went back to normal please review the pull request when you have a moment".split(
    " ",
  );

/** Realistic-size messages: user ~100 chars, assistant ~600 chars, varied per index. */
export function conversation(turns, seed = 1) {
  const r = rng(seed);
  const words = (n) => Array.from({ length: n }, () => WORDS[Math.floor(r() * WORDS.length)]).join(" ");
  const users = [];
  const replies = [];
  for (let i = 0; i < turns; i++) {
    users.push(`${words(14 + Math.floor(r() * 8))}? (${i})`);
    replies.push(`${words(80 + Math.floor(r() * 40))}. Step ${i} done.`);
  }
  return { users, replies };
}

/** Runs `f(i)` for i in 0..n-1, `inFlight` at a time (each batch awaited whole), and returns the seconds it took. */
export async function inBatches(n, inFlight, f) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i += inFlight) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + inFlight); j++) batch.push(f(j));
    await Promise.all(batch);
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
