import { type ChildProcess, execFile, spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "../../src/client/client.js";
import { createGuard, isStuckSessionError } from "../../src/index.js";
import { createLogger } from "../../src/log/logger.js";
import { type RunningServer, serve } from "../../src/server/server.js";
import { CANNED } from "../helpers/replies.js";
import { sessionRequest } from "../helpers/requests.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const TOKEN = "test-token-0123456789abcdef";
const BIN = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const running: RunningServer[] = [];
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.close().catch(() => {});
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

async function start({
  sessionBudgetUsd,
  ...extra
}: {
  reservationTimeoutMs?: number;
  token?: string | undefined;
  sessionBudgetUsd?: number;
} = {}) {
  const ledger = join(tmp(), "ledger.db");
  const guard = createGuard({ ledger, logger: "silent", ...(sessionBudgetUsd && { sessionBudgetUsd }) });
  const r = await serve({
    guard,
    log: createLogger("silent"),
    port: 0,
    token: "token" in extra ? extra.token : TOKEN,
    ...extra,
  });
  running.push(r);
  return { ...r, ledger, guard };
}

async function http(
  url: string,
  path: string,
  init: { method?: string; body?: string; token?: string | null } = {},
) {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (init.token !== null) headers.authorization = `Bearer ${init.token ?? TOKEN}`;
  const res = await fetch(`${url}${path}`, {
    method: init.method ?? "GET",
    headers,
    ...(init.body !== undefined && { body: init.body }),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json: json as Record<string, any> };
}

describe("judge-guard serve", () => {
  it("binds loopback, and refuses another address without a token", async () => {
    const s = await start();
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const guard = createGuard({ ledger: ":memory:", logger: "silent" });
    await expect(serve({ guard, log: createLogger("silent"), host: "0.0.0.0", port: 0 })).rejects.toThrow(
      /refusing to listen on 0\.0\.0\.0 without a token: set JUDGE_GUARD_TOKEN/,
    );
    await guard.close();
  });

  it("requires the bearer token everywhere but /healthz and /readyz", async () => {
    const s = await start();
    expect((await http(s.url, "/healthz", { token: null })).status).toBe(200);
    expect((await http(s.url, "/readyz", { token: null })).json).toEqual({ ready: true, ledger: "ok" });
    expect((await http(s.url, "/v1/sessions/k", { token: null })).json).toEqual({
      error: { code: "UNAUTHORIZED", message: "missing or wrong bearer token" },
    });
    expect((await http(s.url, "/metrics", { token: "wrong-token-0123456789" })).status).toBe(401);
    expect((await http(s.url, "/v1/sessions/k")).status).toBe(200);
  });

  it("the client judges, charges and skips through it like the guard itself", async () => {
    const s = await start();
    const client = createClient({ url: s.url, token: TOKEN });
    let calls = 0;
    const judge = async () => {
      calls++;
      return { inputTokens: 2000, outputTokens: 600 };
    };
    const out = await client.run(sessionRequest("slack:C1", ["q"], ["A real answer."]), judge);
    expect(out).toMatchObject({ status: "judged", costUsd: 0.015 });
    await client.run(sessionRequest("cli", ["a"], [CANNED]), judge);
    const err = await client
      .call(sessionRequest("cli", ["a", "b"], [CANNED, CANNED]), judge)
      .catch((e: unknown) => e);
    expect(isStuckSessionError(err)).toBe(true);
    expect(calls).toBe(2);
    const gate = await client.call(
      sessionRequest("cli", ["a", "b", "c"], [CANNED, CANNED, CANNED]),
      async () => ({ evolve: true }),
      {
        substitute: () => ({ evolve: false }),
      },
    );
    expect(gate).toEqual({ evolve: false });
    const hint = await http(s.url, "/v1/admit", {
      method: "POST",
      body: JSON.stringify({
        judge: "gate",
        model: "claude-haiku-4-5",
        session_key: "cli",
        user_messages: ["a", "b", "c", "d"],
        assistant_messages: [CANNED, CANNED, CANNED, CANNED],
        substitute: "gate",
      }),
    });
    expect(hint.json).toMatchObject({
      decision: "skip",
      code: "STUCK_SESSION",
      substitute: { evolve: false },
    });
    const state = await http(s.url, "/v1/sessions/cli");
    expect(state.json).toMatchObject({ session_key: "cli", stuck: true, repeats: 4 });
    const reset = await http(s.url, "/v1/sessions/cli/reset", { method: "POST" });
    expect(reset.json).toMatchObject({ reset: true, session: { stuck: false } });
    const metrics = await http(s.url, "/metrics");
    expect(metrics.text).toMatch(/judge_guard_decisions_total\{outcome="skipped",reason="stuck_session"\} 3/);
    expect(metrics.text).toMatch(/judge_guard_charged_usd_total 0\.03/);
    expect(metrics.text).toMatch(/judge_guard_request_seconds_bucket/);
  });

  it.each([
    ["not JSON", "{nope", 400, "BODY_INVALID", /not valid JSON/],
    ["empty", "", 400, "BODY_INVALID", /empty/],
    [
      "a missing field",
      JSON.stringify({ model: "m", session_key: "k" }),
      400,
      "FIELD_INVALID",
      /^judge: missing \(required\)/,
    ],
    [
      "a number as a string",
      JSON.stringify({ judge: "j", model: "m", session_key: "k", max_tokens: "4096" }),
      400,
      "FIELD_INVALID",
      /^max_tokens: /,
    ],
    [
      "a prototype-pollution key",
      '{"judge":"j","model":"m","session_key":"k","__proto__":{"admin":true}}',
      400,
      "FIELD_INVALID",
      /__proto__|Unrecognized key/,
    ],
    [
      "a message that is not a string",
      JSON.stringify({
        judge: "j",
        model: "m",
        session_key: "k",
        user_messages: [1],
        assistant_messages: [],
      }),
      400,
      "FIELD_INVALID",
      /^user_messages\.0: /,
    ],
    [
      "a huge label",
      JSON.stringify({ judge: "j".repeat(10_000), model: "m", session_key: "k" }),
      400,
      "FIELD_INVALID",
      /^judge: /,
    ],
  ])(
    "rejects a body that is %s with a JSON error naming the field",
    async (_name, body, status, code, message) => {
      const s = await start();
      const r = await http(s.url, "/v1/admit", { method: "POST", body });
      expect(r.status).toBe(status);
      expect(r.json.error.code).toBe(code);
      expect(r.json.error.message).toMatch(message);
      expect(({} as Record<string, unknown>).admin).toBeUndefined();
    },
  );

  it("refuses what a web page could send: a non-JSON content type, and (without a token) a foreign Host", async () => {
    const s = await start();
    const plain = await fetch(`${s.url}/v1/sessions/k/reset`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "text/plain" },
      body: "{}",
    });
    expect(plain.status).toBe(415);
    const open = await start({ token: undefined });
    const { request: raw } = await import("node:http");
    const status = await new Promise<number>((resolve) => {
      const req = raw(`${open.url}/v1/sessions/k`, { headers: { host: "evil.example" } }, (res) =>
        resolve(res.statusCode ?? 0),
      );
      req.end();
    });
    expect(status).toBe(403);
    expect((await http(open.url, "/v1/sessions/k", { token: null })).status).toBe(200);
  });

  it("the client surfaces a malformed request as InvalidRequestError, and a refusing sidecar like a down one", async () => {
    const s = await start();
    const client = createClient({ url: s.url, token: TOKEN, onError: () => {} });
    const bad = await client
      .run({ judge: "j".repeat(300), model: "m", sessionKey: "k" }, async () => 1)
      .catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: "REQUEST_INVALID", field: "judge" });
    const wrongToken = createClient({
      url: s.url,
      token: "not-the-token-0123456789",
      onUnreachable: "closed",
      onError: () => {},
    });
    const out = await wrongToken.run(sessionRequest("k", ["q"], ["a"]), async () => ({
      inputTokens: 1,
      outputTokens: 1,
    }));
    expect(out).toMatchObject({ status: "skipped", code: "LEDGER_UNAVAILABLE" });
    // The skip says what is wrong and what to set.
    expect(out.status === "skipped" && out.error.message).toMatch(
      /refused \/v1\/admit: .*\(UNAUTHORIZED\): give createClient\(\{ token \}\) the sidecar's JUDGE_GUARD_TOKEN/,
    );
  });

  it("rejects an oversize body and unknown routes, and keeps serving", async () => {
    const s = await start();
    // A client announcing a body over the cap is answered 413 before it sends it all, whether
    // or not it could have sent the rest; a chunked body over the cap is cut off likewise.
    const { request: raw } = await import("node:http");
    const answer = (headers: Record<string, string | number>) =>
      new Promise<number>((resolve, reject) => {
        const req = raw(
          `${s.url}/v1/admit`,
          {
            method: "POST",
            headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on("error", reject);
        req.write(
          `{"judge":"j","model":"m","session_key":"k","user_messages":["${"x".repeat(9 * 1024 * 1024)}`,
        );
        req.end();
      });
    expect(await answer({ "content-length": 20 * 1024 * 1024 })).toBe(413);
    expect(await answer({ "transfer-encoding": "chunked" })).toBe(413);
    expect((await http(s.url, "/v2/nothing")).status).toBe(404);
    expect((await http(s.url, "/healthz")).status).toBe(200);
  });

  it("charges the estimate of a reservation its client never settled, and corrects it when the settlement comes late", async () => {
    const s = await start({ reservationTimeoutMs: 100 });
    const admitted = await http(s.url, "/v1/admit", {
      method: "POST",
      body: JSON.stringify({
        judge: "j",
        model: "claude-sonnet-4-6",
        session_key: "k",
        user_messages: ["q"],
        assistant_messages: ["a"],
      }),
    });
    expect(admitted.json).toMatchObject({ decision: "judge" });
    await new Promise((r) => setTimeout(r, 400));
    expect((await http(s.url, "/metrics")).text).toMatch(/judge_guard_reservations_expired_total 1/);
    const charged = () => {
      const db = new Database(s.ledger, { readonly: true });
      const rows = db
        .prepare(
          "SELECT decision, charged_micros AS c, reserved_micros AS r, cost_source AS src FROM decisions",
        )
        .all() as Array<{ decision: string; c: number; r: number; src: string }>;
      const usage = db.prepare("SELECT sum(micros) AS m, sum(calls) AS n FROM usage WHERE scope = '*'").get();
      const open = db.prepare("SELECT count(*) AS n FROM reservations WHERE charged_micros IS NULL").get();
      db.close();
      return { rows, usage, open };
    };
    // Its cost was never reported, so the reservation's estimate is charged rather than nothing.
    const expired = charged();
    expect(expired.open).toEqual({ n: 0 });
    expect(expired.rows).toHaveLength(1);
    expect(expired.rows[0]).toMatchObject({ decision: "failed", src: "estimate" });
    expect(expired.rows[0]!.c).toBeGreaterThan(0);
    expect(expired.rows[0]!.c).toBe(expired.rows[0]!.r);
    // The client was only slow: its settlement is accepted and replaces the estimate, in the
    // same decision and the same budget.
    const settle = await http(s.url, "/v1/settle", {
      method: "POST",
      body: JSON.stringify({ reservation_id: admitted.json.reservation_id, ok: true, cost_usd: 0.5 }),
    });
    expect(settle.status).toBe(200);
    expect(settle.json.charged_usd).toBe(0.5);
    const late = charged();
    expect(late.rows).toEqual([{ decision: "judged", c: 500_000, r: expired.rows[0]!.r, src: "reported" }]);
    expect(late.usage).toEqual({ m: 500_000, n: 1 });
    // A second settlement of the same call is refused.
    const again = await http(s.url, "/v1/settle", {
      method: "POST",
      body: JSON.stringify({ reservation_id: admitted.json.reservation_id, ok: true, cost_usd: 0.5 }),
    });
    expect(again.status).toBe(400);
    expect(again.json.error.message).toMatch(/settled already/);
  });

  it("a call admitted by one sidecar and settled through another is charged once, even when the first one's timeout passes", async () => {
    const a = await start({ reservationTimeoutMs: 300 });
    const bGuard = createGuard({ ledger: a.ledger, logger: "silent" });
    const b = await serve({ guard: bGuard, log: createLogger("silent"), port: 0, token: TOKEN });
    running.push(b);
    const admitted = await http(a.url, "/v1/admit", {
      method: "POST",
      body: JSON.stringify({
        judge: "j",
        model: "claude-sonnet-4-6",
        session_key: "k",
        user_messages: ["q"],
        assistant_messages: ["a"],
      }),
    });
    const settle = await http(b.url, "/v1/settle", {
      method: "POST",
      body: JSON.stringify({ reservation_id: admitted.json.reservation_id, ok: true, cost_usd: 0.25 }),
    });
    expect(settle.status).toBe(200);
    // a's sweeper finds its ticket past the timeout: it was settled already, so nothing more is charged.
    await new Promise((r) => setTimeout(r, 700));
    const db = new Database(a.ledger, { readonly: true });
    const rows = db.prepare("SELECT decision, charged_micros AS c FROM decisions").all();
    const usage = db.prepare("SELECT sum(micros) AS m FROM usage WHERE scope = '*'").get();
    db.close();
    expect(rows).toEqual([{ decision: "judged", c: 250_000 }]);
    expect(usage).toEqual({ m: 250_000 });
  });

  it("charges cache writes through the client as in process: 1-hour writes at their own price", async () => {
    const s = await start();
    const client = createClient({ url: s.url, token: TOKEN });
    const local = createGuard({ ledger: ":memory:", logger: "silent" });
    const result = {
      model: "claude-sonnet-4-6",
      usage: {
        input_tokens: 10,
        output_tokens: 10,
        cache_creation_input_tokens: 1_000_000,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1_000_000 },
      },
    };
    const req = sessionRequest("k", ["q"], ["a real reply here"]);
    const viaSidecar = await client.run(req, () => result);
    const inProcess = await local.run(req, () => result);
    await local.close();
    expect(viaSidecar.status === "judged" && viaSidecar.costUsd).toBeCloseTo(6.00018, 6);
    expect(inProcess.status === "judged" && inProcess.costUsd).toBeCloseTo(6.00018, 6);
  });

  it("charges nothing for a call whose client gave up while its admission waited", async () => {
    // Near the cap, a second call on the key waits for the first to settle.
    const s = await start({ sessionBudgetUsd: 0.02 });
    const client = createClient({ url: s.url, token: TOKEN, timeoutMs: 5000 });
    let finish = () => {};
    const first = client.run(sessionRequest("k", ["q"], ["a real reply here"]), async () => {
      await new Promise<void>((r) => {
        finish = r;
      });
      return { usage: { input_tokens: 10, output_tokens: 10 } };
    });
    // The first call is admitted and in flight before the second asks.
    for (let i = 0; i < 200 && s.guard.openTickets().length === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(s.guard.openTickets()).toHaveLength(1);
    const gaveUp = await fetch(`${s.url}/v1/admit`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ judge: "j", model: "claude-sonnet-4-6", session_key: "k", wait_ms: 5000 }),
      signal: AbortSignal.timeout(300),
    }).then(
      () => "answered",
      (e: Error) => e.name,
    );
    expect(gaveUp).toBe("TimeoutError");
    finish();
    const out = await first;
    expect(out.status).toBe("judged");
    // The waiting admission goes through once the first call settles, finds its client gone,
    // and releases its reservation.
    const db = new Database(s.ledger, { readonly: true });
    const open = () => (db.prepare("SELECT count(*) AS n FROM reservations").get() as { n: number }).n;
    for (let i = 0; i < 100 && (open() > 0 || s.guard.openTickets().length > 0); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(open()).toBe(0);
    const charged = db.prepare("SELECT sum(charged_micros) AS m FROM decisions").get() as { m: number };
    db.close();
    expect(charged.m / 1e6).toBeCloseTo(out.status === "judged" ? out.costUsd : -1, 9);
    expect(s.guard.session("k").calls).toBe(1);
  });

  it("SIGTERM under load: finishes what it accepted, loses and doubles nothing", async () => {
    const ledger = join(tmp(), "ledger.db");
    const child = spawn(process.execPath, [BIN, "serve", "--port", "0"], {
      env: {
        ...process.env,
        JUDGE_GUARD_DB: ledger,
        JUDGE_GUARD_TOKEN: TOKEN,
        JUDGE_GUARD_LOG_LEVEL: "silent",
      },
    });
    children.push(child);
    let out = "";
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout!.on("data", (d: Buffer) => {
        out += d;
        const m = /serving on (http:\/\/[^ ]+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on("exit", (c) => reject(new Error(`serve exited ${c}: ${out}`)));
    });
    // Calls refused during shutdown are skipped, not run under the client's local budget.
    const client = createClient({ url, token: TOKEN, onUnreachable: "closed", onError: () => {} });
    let settled = 0;
    let invoked = 0;
    const work = Array.from({ length: 60 }, (_, i) =>
      client
        .run(sessionRequest(`k${i % 6}`, [`q${i}`], [`answer ${i} with substance`]), async () => {
          invoked++;
          await new Promise((r) => setTimeout(r, 5 + (i % 10) * 3));
          return { inputTokens: 100, outputTokens: 10 };
        })
        .then((o) => {
          if (o.status === "judged" && o.costUsd > 0) settled++;
        })
        .catch(() => {}),
    );
    // Under load: some calls have run, others are still arriving.
    for (let i = 0; i < 500 && invoked < 5; i++) await new Promise((r) => setTimeout(r, 10));
    child.kill("SIGTERM");
    const code = await new Promise<number | null>((r) => child.on("exit", r));
    await Promise.all(work);
    expect(code).toBe(0);
    expect(out).toContain("judge-guard stopped");
    const db = new Database(ledger, { readonly: true });
    const judged = (
      db.prepare("SELECT count(*) AS n FROM decisions WHERE decision = 'judged'").get() as { n: number }
    ).n;
    const recorded = (
      db.prepare("SELECT count(*) AS n FROM decisions WHERE decision != 'skipped'").get() as { n: number }
    ).n;
    const open = (
      db.prepare("SELECT count(*) AS n FROM reservations WHERE charged_micros IS NULL").get() as { n: number }
    ).n;
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    db.close();
    // Every settlement the server confirmed is in the ledger, once; every judge call that ran is
    // recorded (settled, or charged at its estimate at shutdown); no reservation is left behind.
    expect(judged).toBe(settled);
    expect(recorded).toBe(invoked);
    expect(open).toBe(0);
    expect(settled).toBeGreaterThan(0);
  });
});

describe("judge-guard/client when the sidecar does not answer", () => {
  it.each([
    ["closed", "skipped", 0],
    ["open", "judged", 1],
  ] as const)("onUnreachable %s: the call is %s", async (policy, status, calls) => {
    const errors: string[] = [];
    // Nothing listens on port 9 of the loopback (discard): the connection is refused at once.
    const client = createClient({
      url: "http://127.0.0.1:9",
      onUnreachable: policy,
      timeoutMs: 500,
      onError: (e) => errors.push(e.message),
    });
    let made = 0;
    const out = await client.run(sessionRequest("k", ["q"], ["a"]), async () => {
      made++;
      return { inputTokens: 1, outputTokens: 1 };
    });
    expect(out.status).toBe(status);
    if (out.status === "skipped") expect(out.code).toBe("LEDGER_UNAVAILABLE");
    expect(made).toBe(calls);
    expect(errors[0]).toMatch(/the sidecar at http:\/\/127\.0\.0\.1:9 did not answer/);
  });
});

describe("judge-guard/client under Bun", () => {
  it("guards Phantom's pipeline from a Bun process through the sidecar", async () => {
    const s = await start();
    const bun = fileURLToPath(new URL("../../node_modules/.bin/bun", import.meta.url));
    const script = fileURLToPath(new URL("../fixtures/phantom-runtime/client.bun.ts", import.meta.url));
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(bun, [script, s.url, TOKEN], { timeout: 60_000 }, (err, so, se) =>
        err ? reject(new Error(`${err.message}\n${se}`)) : resolve(so),
      ),
    );
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!);
    expect(result).toMatchObject({ runtime: "bun", canned: 40, skippedCycles: 39, judgeCalls: 2 + 40 * 2 });
    const db = new Database(s.ledger, { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM episodes").get()).toEqual({ n: 1 });
    db.close();
  });
});
