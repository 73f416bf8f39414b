import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { createGuard, type GuardEvent, verifyWebhook, webhookSink } from "../../src/index.js";
import { ensureBuilt } from "../helpers/cli.js";
import { FakeClock, useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const RACE = fileURLToPath(new URL("../fixtures/processes/signal-race.mjs", import.meta.url));
const SECRET = "race-secret-0123456789";
const PROCESSES = 4;
const KEYS = 60;

/**
 * A webhook receiver on 127.0.0.1 that records every verified delivery. `hold` leaves the first
 * that many requests unanswered (a delivery in progress when its sender dies).
 */
async function receiver(hold = 0) {
  const events: GuardEvent[] = [];
  const rejected: string[] = [];
  let requests = 0;
  const server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (++requests <= hold) return;
    const body = Buffer.concat(chunks).toString("utf8");
    const v = verifyWebhook(body, req.headers["x-judge-guard-signature"] as string, SECRET);
    if (v.ok) events.push(v.event);
    else rejected.push(v.reason);
    // A receiver takes a moment to act (Phantom clears a session row).
    setTimeout(() => res.writeHead(v.ok ? 200 : 400).end(), 5);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return {
    url,
    events,
    rejected,
    requests: () => requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}

interface RaceResult {
  skipped: number;
  judged: number;
  episodes: number;
  delivered: number;
  ledgerErrors: number;
}

/** Starts the processes, waits until each is ready, releases them together, collects their counts. */
async function race(ledger: string, url: string, mode: "stuck" | "alerts"): Promise<RaceResult[]> {
  ensureBuilt();
  const dir = tmp();
  const go = join(dir, "go");
  const children = Array.from({ length: PROCESSES }, (_, i) => {
    const ready = join(dir, `ready-${i}`);
    const child = spawn(process.execPath, [RACE, ledger, url, ready, go, mode, String(KEYS)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    const done = new Promise<RaceResult>((resolve, reject) =>
      child.on("close", (code) =>
        code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`process ${i} exited ${code}: ${err}`)),
      ),
    );
    return { ready, done };
  });
  const deadline = Date.now() + 30_000;
  while (!children.every((c) => existsSync(c.ready))) {
    if (Date.now() > deadline) throw new Error("the processes did not get ready in 30 s");
    await new Promise((r) => setTimeout(r, 10));
  }
  writeFileSync(go, "");
  return Promise.all(children.map((c) => c.done));
}

const countBy = (ids: string[]) => {
  const m = new Map<string, number>();
  for (const id of ids) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
};

describe("one signal per episode, one alert per window, across processes", () => {
  it(`${PROCESSES} processes see ${KEYS} keys turn stuck at once: one episode per key, one delivered signal per episode`, async () => {
    const ledger = join(tmp(), "ledger.db");
    const hook = await receiver();
    try {
      const results = await race(ledger, hook.url, "stuck");
      const db = new Database(ledger, { readonly: true });
      const episodes = db.prepare("SELECT id, session_key, ended_ms FROM episodes").all() as Array<{
        id: string;
        session_key: string;
        ended_ms: number | null;
      }>;
      const delivered = db
        .prepare("SELECT event_id FROM signals WHERE status = 'delivered'")
        .pluck()
        .all() as string[];
      db.close();
      const signals = hook.events.filter((e) => e.type === "stuck_session");
      const perEpisode = countBy(signals.map((e) => (e.type === "stuck_session" ? e.episode_id : "")));
      const perKey = countBy(episodes.map((e) => e.session_key));
      const open = episodes.filter((e) => e.ended_ms === null);
      console.log(
        `signals: ${PROCESSES} processes x ${KEYS} keys stuck at once: ${signals.length} signals received for ${perEpisode.size} episodes; ${episodes.length} episodes in the ledger (${open.length} open), ${[...perKey.values()].filter((n) => n > 1).length} keys with 2 or more`,
      );
      expect(hook.rejected).toEqual([]);
      expect(results.every((r) => r.ledgerErrors === 0)).toBe(true);
      // Every process skipped the stuck keys' judges.
      expect(results.map((r) => r.skipped)).toEqual(Array(PROCESSES).fill(KEYS));
      expect(perKey.size).toBe(KEYS);
      expect([...perKey.values()].every((n) => n === 1)).toBe(true);
      expect(open).toHaveLength(KEYS);
      expect(results.reduce((a, r) => a + r.episodes, 0)).toBe(KEYS);
      expect(signals).toHaveLength(KEYS);
      expect([...perEpisode.keys()].sort()).toEqual(episodes.map((e) => e.id).sort());
      expect(delivered.sort()).toEqual(episodes.map((e) => e.id).sort());
    } finally {
      await hook.close();
    }
  }, 90_000);

  it(`${PROCESSES} processes cross the alert line of ${KEYS} keys at once: one warning per window`, async () => {
    const ledger = join(tmp(), "ledger.db");
    // Each key at $0.79 of its $1 cap: any settlement crosses the alert line (0.8). (Another judge
    // kind: a $0.79 report for ten tokens would teach "j"'s estimate to expect that much.)
    const seed = createGuard({ ledger, logger: "silent", sessionBudgetUsd: 1, dailyBudgetUsd: Infinity });
    for (let i = 0; i < KEYS; i++) {
      await seed.run(
        {
          judge: "seed",
          model: "claude-sonnet-4-6",
          sessionKey: `race:${i}`,
          userMessages: ["seed"],
          assistantMessages: ["a seed answer"],
          maxTokens: 10,
        },
        async () => ({ costUsd: 0.79 }),
      );
    }
    await seed.close();
    const hook = await receiver();
    try {
      const results = await race(ledger, hook.url, "alerts");
      const alerts = hook.events.filter((e) => e.type === "budget_alert");
      const perWindow = countBy(alerts.map((e) => (e.type === "budget_alert" ? e.alert_id : "")));
      console.log(
        `alerts: ${PROCESSES} processes x ${KEYS} keys crossing at once: ${alerts.length} warnings received for ${perWindow.size} windows`,
      );
      expect(hook.rejected).toEqual([]);
      expect(results.reduce((a, r) => a + r.judged, 0)).toBe(PROCESSES * KEYS);
      expect(alerts.every((a) => a.type === "budget_alert" && a.level === "warning")).toBe(true);
      expect(perWindow.size).toBe(KEYS);
      expect(alerts).toHaveLength(KEYS);
    } finally {
      await hook.close();
    }
  }, 90_000);
});

describe("a claimed signal whose process dies before delivering", () => {
  it("is sent by another process once the claim is a signal cooldown old, and only then", async () => {
    ensureBuilt();
    const dir = tmp();
    const ledger = join(dir, "ledger.db");
    const hook = await receiver(1);
    try {
      // A process turns one key stuck, claims its signal, and is killed while delivering it.
      const child = spawn(
        process.execPath,
        [RACE, ledger, hook.url, join(dir, "ready"), join(dir, "go"), "stuck", "1"],
        { stdio: "ignore" },
      );
      const exited = new Promise((r) => child.on("close", r));
      writeFileSync(join(dir, "go"), "");
      const deadline = Date.now() + 20_000;
      while (hook.requests() === 0) {
        if (Date.now() > deadline) throw new Error("the first process never tried to deliver");
        await new Promise((r) => setTimeout(r, 5));
      }
      child.kill("SIGKILL");
      await exited;

      const clock = new FakeClock(Date.now());
      const cooldown = 60_000; // within the receiver's tolerance for event times
      const guard = createGuard({
        ledger,
        logger: "silent",
        clock,
        signalCooldownMs: cooldown,
        signals: [webhookSink({ url: hook.url, secret: SECRET, retries: 0 })],
      });
      const canned = "I'm still working on your previous request. Please wait a moment.";
      const see = (turns: number) =>
        guard.assess({
          sessionKey: "race:0",
          userMessages: Array.from({ length: turns }, (_, i) => `question ${i} about race:0`),
          assistantMessages: Array.from({ length: turns }, () => canned),
        });
      // This process sees the whole transcript at once, as a sidecar restarted elsewhere would.
      const adopted = see(3);
      see(4);
      await new Promise((r) => setTimeout(r, 200));
      const before = hook.events.length;
      clock.advance(cooldown);
      see(5);
      await guard.close();
      const db = new Database(ledger, { readonly: true });
      const episodes = db.prepare("SELECT id FROM episodes").pluck().all() as string[];
      db.close();
      console.log(
        `orphaned claim: ${hook.requests()} deliveries tried, ${before} within the cooldown, ${hook.events.length} delivered after it`,
      );
      expect(hook.rejected).toEqual([]);
      expect(adopted).toMatchObject({ stuck: true, episodeId: episodes[0] });
      expect(episodes).toHaveLength(1);
      expect(before).toBe(0);
      expect(hook.events).toHaveLength(1);
      expect(hook.events[0]).toMatchObject({ type: "stuck_session", episode_id: episodes[0] });
      expect(guard.stats.stuckEpisodes).toBe(0); // adopted, not opened
    } finally {
      await hook.close();
    }
  }, 60_000);
});
