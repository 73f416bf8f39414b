import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type BudgetAlertEvent,
  ConfigError,
  createGuard,
  fromEnv,
  type GuardEvent,
  MemoryStore,
  phantomSqliteSink,
  SIGNATURE_HEADER,
  type StuckSessionEvent,
  sign,
  verifyWebhook,
  webhookSink,
} from "../../src/index.js";
import { cli, ensureBuilt } from "../helpers/cli.js";
import { CANNED } from "../helpers/replies.js";
import { FakeClock, useTempDir } from "../helpers/tmp.js";

beforeAll(ensureBuilt, 120_000);

const tmp = useTempDir();

/** The error a delivery fails with (the test fails if it succeeds). */
async function failure(delivery: unknown): Promise<Error & { attempts?: number; code?: string }> {
  try {
    await delivery;
  } catch (e) {
    return e as Error & { attempts?: number; code?: string };
  }
  throw new Error("expected the delivery to fail");
}

/** Phantom's sessions table, as both versions create it. */
const PHANTOM_SCHEMA = `CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, session_key TEXT UNIQUE NOT NULL,
  sdk_session_id TEXT, channel_id TEXT NOT NULL, conversation_id TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active',
  total_cost_usd REAL NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
  turn_count INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL DEFAULT (datetime('now')),
  last_active_at TEXT NOT NULL DEFAULT (datetime('now')))`;

function phantomDb(): string {
  const path = join(tmp(), "phantom.db");
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.exec(PHANTOM_SCHEMA);
  const insert = db.prepare(
    "INSERT INTO sessions (session_key, sdk_session_id, channel_id, conversation_id, last_active_at) VALUES (?, ?, ?, ?, '2026-01-01 00:00:00')",
  );
  insert.run("cli:cli:local", "sdk_stale_0af3", "cli", "local");
  insert.run("slack:C1", "sdk_live_91ab", "slack", "C1");
  db.close();
  return path;
}

const stuckEvent: StuckSessionEvent = {
  type: "stuck_session",
  session_key: "cli:cli:local",
  reason: "stuck_session",
  fingerprint: "6a81a5e5a06166c1",
  repeats: 3,
  episode_id: "3f2b8a1e-9c4d-4e5f-8a6b-7c8d9e0f1a2b",
  ts: new Date().toISOString(),
};

describe("phantomSqliteSink", () => {
  it("clears the stuck key's SDK session in Phantom's table and leaves everything else alone", async () => {
    const path = phantomDb();
    const sink = phantomSqliteSink({ path });
    expect(await sink.send(stuckEvent)).toEqual({ attempts: 1 });
    await sink.close?.();
    const db = new Database(path, { readonly: true });
    const rows = db
      .prepare("SELECT session_key, sdk_session_id, status, last_active_at FROM sessions ORDER BY id")
      .all() as Array<Record<string, string | null>>;
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    db.close();
    expect(rows[0]).toMatchObject({ session_key: "cli:cli:local", sdk_session_id: null, status: "active" });
    expect(rows[0]!.last_active_at).not.toBe("2026-01-01 00:00:00");
    expect(rows[1]).toMatchObject({
      session_key: "slack:C1",
      sdk_session_id: "sdk_live_91ab",
      last_active_at: "2026-01-01 00:00:00",
    });
  });

  it.each([
    ["a missing file", (dir: string) => join(dir, "nope.db"), /JUDGE_GUARD_PHANTOM_DB.*does not exist/],
    [
      "a database without a sessions table",
      (dir: string) => {
        const p = join(dir, "other.db");
        new Database(p).exec("CREATE TABLE t (x)");
        return p;
      },
      /has no sessions table: is it Phantom's database\?/,
    ],
  ])("fails delivery with a clear reason for %s", async (_name, make, message) => {
    const sink = phantomSqliteSink({ path: make(tmp()) });
    await expect(sink.send(stuckEvent)).rejects.toThrow(message);
  });

  it("waits for Phantom's write lock with short retries, then gives up without holding anything", async () => {
    const path = phantomDb();
    const phantom = new Database(path);
    phantom.exec("BEGIN IMMEDIATE"); // Phantom mid-write
    const sink = phantomSqliteSink({ path, busyTimeoutMs: 10, retries: 2, backoffMs: 5 });
    const err = await failure(sink.send(stuckEvent));
    expect(err).toMatchObject({ code: "SIGNAL_DELIVERY", attempts: 3 });
    expect(String(err.message)).toMatch(/locked|busy/i);
    phantom.exec("COMMIT");
    // Once the lock is gone the same sink delivers.
    expect(await sink.send(stuckEvent)).toEqual({ attempts: 1 });
    phantom.close();
    await sink.close?.();
  });

  it("a guard records a failed delivery and retries it after the cooldown, without throwing at the host", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore();
    const dir = tmp();
    const guard = createGuard({
      ledger: store,
      logger: "silent",
      clock,
      signalCooldownMs: 60_000,
      signals: [phantomSqliteSink({ path: join(dir, "phantom.db") })],
    });
    const users: string[] = [];
    const replies: string[] = [];
    const turn = async (u: string) => {
      users.push(u);
      replies.push(CANNED);
      await guard.run(
        {
          judge: "j",
          model: "claude-sonnet-4-6",
          session: {
            session_key: "cli:cli:local",
            user_messages: [...users],
            assistant_messages: [...replies],
          },
        },
        async () => ({ inputTokens: 1, outputTokens: 1 }),
      );
      await new Promise((r) => setTimeout(r, 20));
    };
    await turn("a");
    await turn("b"); // stuck: delivery fails, the file is missing
    const db = new Database(join(dir, "phantom.db"));
    db.exec(PHANTOM_SCHEMA);
    db.prepare(
      "INSERT INTO sessions (session_key, sdk_session_id, channel_id, conversation_id) VALUES ('cli:cli:local', 'sdk_x', 'cli', 'local')",
    ).run();
    const sdkSession = () =>
      (db.prepare("SELECT sdk_session_id AS id FROM sessions").get() as { id: string | null }).id;
    await turn("c"); // within the cooldown: no retry
    for (let i = 0; i < 200 && store.signals.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect(store.signals.map((s) => s.status)).toEqual(["failed"]);
    expect(sdkSession()).toBe("sdk_x");
    clock.advance(61_000);
    await turn("d"); // retried and delivered
    for (let i = 0; i < 200 && store.signals.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(store.signals.map((s) => s.status)).toEqual(["failed", "delivered"]);
    expect(sdkSession()).toBeNull();
    await turn("e"); // delivered once: never again
    await guard.close();
    db.close();
    expect(store.signals.map((s) => s.status)).toEqual(["failed", "delivered"]);
  });
});

describe("webhookSink and verifyWebhook", () => {
  const secret = "s3cret-for-tests-only-0123456789";
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  /** A real receiver on 127.0.0.1 that answers with the given statuses in turn. */
  async function receiver(statuses: number[]) {
    const got: Array<{
      headers: IncomingMessage["headers"];
      body: string;
      verified: ReturnType<typeof verifyWebhook>;
    }> = [];
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        got.push({
          headers: req.headers,
          body,
          verified: verifyWebhook(body, req.headers[SIGNATURE_HEADER] as string, secret),
        });
        res.statusCode = statuses[Math.min(got.length - 1, statuses.length - 1)]!;
        res.end();
      });
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}/judge-guard`, got };
  }

  it("posts the signed event; the receiver verifies it", async () => {
    const r = await receiver([204]);
    const sink = webhookSink({ url: r.url, secret });
    expect(await sink.send(stuckEvent)).toEqual({ attempts: 1 });
    expect(r.got).toHaveLength(1);
    const { headers, body, verified } = r.got[0]!;
    expect(verified).toEqual({ ok: true, event: stuckEvent, id: stuckEvent.episode_id });
    expect(JSON.parse(body)).toMatchObject({
      session_key: "cli:cli:local",
      reason: "stuck_session",
      fingerprint: "6a81a5e5a06166c1",
      repeats: 3,
      episode_id: stuckEvent.episode_id,
      ts: stuckEvent.ts,
    });
    expect(headers["content-type"]).toBe("application/json");
    expect(headers[SIGNATURE_HEADER]).toBe(sign(body, secret));
    expect(headers["idempotency-key"]).toBe(stuckEvent.episode_id);
  });

  it("retries 5xx and 429 with the same body and idempotency key, and stops at a 4xx", async () => {
    const r = await receiver([503, 429, 200]);
    expect(await webhookSink({ url: r.url, secret, backoffMs: 5 }).send(stuckEvent)).toEqual({ attempts: 3 });
    const keys = new Set(r.got.map((g) => g.headers["idempotency-key"]));
    expect(keys.size).toBe(1);
    expect(new Set(r.got.map((g) => g.body)).size).toBe(1);
    await new Promise<void>((done) => server!.close(() => done()));
    const bad = await receiver([400]);
    const err = await failure(webhookSink({ url: bad.url, secret, backoffMs: 5 }).send(stuckEvent));
    expect(err).toMatchObject({ code: "SIGNAL_DELIVERY", attempts: 1 });
    expect(String(err.message)).toMatch(/answered HTTP 400/);
  });

  it("gives up after its retries when nothing answers in time", async () => {
    server = createServer(() => {}); // accepts and never answers
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const err = await failure(
      webhookSink({ url, secret, timeoutMs: 50, retries: 1, backoffMs: 5 }).send(stuckEvent),
    );
    expect(err).toMatchObject({ attempts: 2 });
    expect(String(err.message)).toMatch(/no answer within 50 ms/);
    server.closeAllConnections();
  });

  it.each([
    [
      "a wrong secret",
      (b: string) => ({ body: b, sig: sign(b, "another-secret-0123456789") }),
      "bad signature",
    ],
    [
      "a tampered body",
      (b: string) => ({ body: b.replace('"repeats":3', '"repeats":4'), sig: sign(b, secret) }),
      "bad signature",
    ],
    ["no signature", (b: string) => ({ body: b, sig: undefined }), "missing x-judge-guard-signature header"],
    [
      "a stale event",
      () => {
        const old = JSON.stringify({ ...stuckEvent, ts: new Date(Date.now() - 3_600_000).toISOString() });
        return { body: old, sig: sign(old, secret) };
      },
      "stale event (ts outside the tolerance)",
    ],
  ])("rejects %s", (_name, make, reason) => {
    const { body, sig } = make(JSON.stringify(stuckEvent));
    expect(verifyWebhook(body, sig, secret)).toEqual({ ok: false, reason });
  });
});

describe("budget alerts", () => {
  it("warn once at the alert fraction and once when a cap refuses, per window", async () => {
    const events: GuardEvent[] = [];
    const clock = new FakeClock(Date.parse("2026-11-20T00:00:00Z"));
    const guard = createGuard({
      ledger: new MemoryStore(),
      logger: "silent",
      clock,
      sessionBudgetUsd: 1,
      budgetWindowMs: 3_600_000,
      alertAt: 0.5,
      estimator: { defaultOutputTokens: 1 },
      signals: [{ name: "cb", send: (e) => void events.push(e) }],
    });
    const judge = async () => ({ inputTokens: 100_000, outputTokens: 0 }); // $0.30
    for (let i = 0; i < 6; i++) {
      await guard.run(
        {
          judge: "j",
          model: "claude-sonnet-4-6",
          sessionKey: "k",
          userMessages: [`q${i}`],
          assistantMessages: [`answer ${i}`],
        },
        judge,
      );
      await new Promise((r) => setImmediate(r));
    }
    await guard.close();
    const alerts = events as BudgetAlertEvent[];
    expect(alerts.map((a) => [a.type, a.level, a.reason, a.session_key])).toEqual([
      ["budget_alert", "warning", "session_budget", "k"],
      ["budget_alert", "cap_reached", "session_budget", "k"],
    ]);
    expect(alerts[0]).toMatchObject({
      scope: "session",
      used: 0.6,
      cap: 1,
      window_start: "2026-11-20T00:00:00.000Z",
    });
  });
});

describe("budget alerts across restarts", () => {
  it("an alert delivered before a restart is not sent again in the same window", async () => {
    const ledger = join(tmp(), "ledger.db");
    const clock = new FakeClock(Date.parse("2026-11-20T00:00:00Z"));
    const events: GuardEvent[] = [];
    const make = () =>
      createGuard({
        ledger,
        logger: "silent",
        clock,
        dailyBudgetUsd: 1,
        alertAt: 0.5,
        estimator: { defaultOutputTokens: 1 },
        signals: [{ name: "cb", send: (e) => void events.push(e) }],
      });
    const judge = async () => ({ inputTokens: 200_000, outputTokens: 0 }); // $0.60
    const ask = (g: ReturnType<typeof make>, i: number) =>
      g.run(
        {
          judge: "j",
          model: "claude-sonnet-4-6",
          sessionKey: `k${i}`,
          userMessages: [`q${i}`],
          assistantMessages: [`a${i}`],
        },
        judge,
      );
    const a = make();
    await ask(a, 1);
    await a.close();
    const b = make();
    await ask(b, 2); // still over half the cap: the warning is not sent again
    await ask(b, 3); // refused by the cap: a new alert (cap_reached)
    await b.close();
    expect((events as BudgetAlertEvent[]).map((e) => [e.level, e.reason])).toEqual([
      ["warning", "global_budget"],
      ["cap_reached", "global_budget"],
    ]);
  });
});

describe("JUDGE_GUARD_SIGNAL=phantom-sqlite checks JUDGE_GUARD_PHANTOM_DB at start-up", () => {
  it.each<[string, (dir: string) => string | undefined, RegExp]>([
    [
      "unset",
      () => undefined,
      /JUDGE_GUARD_SIGNAL includes phantom-sqlite, which needs JUDGE_GUARD_PHANTOM_DB/,
    ],
    [
      "a file that does not exist (yet)",
      (dir) => join(dir, "phantom.db"),
      /phantom\.db" \(for JUDGE_GUARD_SIGNAL=phantom-sqlite\) does not exist: give the path of Phantom's data\/phantom\.db\. Phantom creates it at its first start/,
    ],
    [
      "a folder that does not exist",
      (dir) => join(dir, "data", "phantom.db"),
      /does not exist, nor does its folder .*data: give the path of Phantom's data\/phantom\.db, as this process sees it/,
    ],
    [
      "a folder",
      (dir) => {
        mkdirSync(join(dir, "phantom.db"));
        return join(dir, "phantom.db");
      },
      /is a folder: give the path of Phantom's data\/phantom\.db/,
    ],
    [
      "another program's database",
      (dir) => {
        const p = join(dir, "other.db");
        new Database(p).exec("CREATE TABLE t (x)").close();
        return p;
      },
      /cannot be used: it has no sessions table: is it Phantom's database\?/,
    ],
    [
      "a sessions table that is not Phantom's",
      (dir) => {
        const p = join(dir, "other.db");
        new Database(p).exec("CREATE TABLE sessions (session_key TEXT, user TEXT)").close();
        return p;
      },
      /it has a sessions table without sdk_session_id, status, last_active_at, turn_count: is it Phantom's database\?/,
    ],
    [
      "a file that is not SQLite",
      (dir) => {
        const p = join(dir, "phantom.db");
        writeFileSync(p, "not a database");
        return p;
      },
      /cannot be used: cannot read .*phantom\.db: file is not a database/,
    ],
  ])("%s: fromEnv throws a ConfigError naming JUDGE_GUARD_PHANTOM_DB", (_name, make, message) => {
    const dir = tmp();
    const path = make(dir);
    const env = {
      JUDGE_GUARD_SIGNAL: "phantom-sqlite",
      ...(path !== undefined && { JUDGE_GUARD_PHANTOM_DB: path }),
    };
    const before = readdirSync(dir).sort();
    let err: unknown;
    try {
      fromEnv(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).setting).toBe("JUDGE_GUARD_PHANTOM_DB");
    expect((err as Error).message).toMatch(message);
    expect(readdirSync(dir).sort()).toEqual(before); // nothing created beside it
  });

  it("Phantom's database passes, and is left as it was", () => {
    const path = phantomDb();
    const before = readFileSync(path);
    expect(
      fromEnv({ JUDGE_GUARD_SIGNAL: "phantom-sqlite", JUDGE_GUARD_PHANTOM_DB: path }).signals?.map(
        (s) => s.name,
      ),
    ).toEqual(["phantom-sqlite"]);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it("judge-guard serve stops before it listens: exit 2, one line", async () => {
    const r = await cli(["serve", "--port", "0"], {
      env: {
        JUDGE_GUARD_SIGNAL: "phantom-sqlite",
        JUDGE_GUARD_PHANTOM_DB: join(tmp(), "phantom.db"),
        JUDGE_GUARD_DB: ":memory:",
      },
      timeoutMs: 15_000,
    });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(
        /^judge-guard: JUDGE_GUARD_PHANTOM_DB=".*" \(for JUDGE_GUARD_SIGNAL=phantom-sqlite\) does not exist/,
      ),
    ]);
  });
});

describe("JUDGE_GUARD_SIGNAL", () => {
  it.each([
    [
      { JUDGE_GUARD_SIGNAL: "pager" },
      /JUDGE_GUARD_SIGNAL="pager" is not valid: expected a comma-separated list of none, callback, phantom-sqlite, webhook/,
    ],
    [
      { JUDGE_GUARD_SIGNAL: "phantom-sqlite" },
      /JUDGE_GUARD_SIGNAL includes phantom-sqlite, which needs JUDGE_GUARD_PHANTOM_DB/,
    ],
    [
      { JUDGE_GUARD_SIGNAL: "webhook", JUDGE_GUARD_WEBHOOK_URL: "http://127.0.0.1:9/x" },
      /needs JUDGE_GUARD_WEBHOOK_SECRET/,
    ],
    [
      {
        JUDGE_GUARD_SIGNAL: "webhook",
        JUDGE_GUARD_WEBHOOK_URL: "nope",
        JUDGE_GUARD_WEBHOOK_SECRET: "0123456789abcdefg",
      },
      /^JUDGE_GUARD_WEBHOOK_URL="nope" is not valid: expected an http or https URL$/,
    ],
    [{ JUDGE_GUARD_SIGNAL: "callback" }, /callback, which needs the function from code/],
  ])("%j is refused with a message naming the variable", (env, message) => {
    expect(() => fromEnv(env)).toThrow(message);
  });

  it("never echoes the webhook secret in an error", () => {
    const env = {
      JUDGE_GUARD_SIGNAL: "webhook",
      JUDGE_GUARD_WEBHOOK_URL: "http://127.0.0.1:9/x",
      JUDGE_GUARD_WEBHOOK_SECRET: "Zq9-leak-ME",
    };
    const err = (() => {
      try {
        fromEnv(env);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).toMatch(
      /^JUDGE_GUARD_WEBHOOK_SECRET is not valid: expected a string of at least 16 characters$/,
    );
    expect(err?.message).not.toContain("Zq9-leak-ME");
  });

  it("builds the channels it names, and adds the sinks given in code", () => {
    const cb = { name: "callback", send: () => {} };
    const o = fromEnv(
      {
        JUDGE_GUARD_SIGNAL: "phantom-sqlite,webhook,callback",
        JUDGE_GUARD_PHANTOM_DB: phantomDb(),
        JUDGE_GUARD_WEBHOOK_URL: "https://ops.example/hook",
        JUDGE_GUARD_WEBHOOK_SECRET: "0123456789abcdef0123",
      },
      { signals: [cb] },
    );
    expect(o.signals?.map((s) => s.name)).toEqual(["phantom-sqlite", "webhook", "callback"]);
  });
});
