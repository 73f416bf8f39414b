// A route asked with the wrong method answers 405 with Allow, not 404; a shutdown that waits for
// settlements says so, and for how long.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createGuard } from "../../src/index.js";
import { createLogger } from "../../src/log/logger.js";
import { type RunningServer, serve } from "../../src/server/server.js";
import { BIN, ensureBuilt } from "../helpers/cli.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const TOKEN = "test-token-0123456789abcdef";
const running: RunningServer[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.close().catch(() => {});
});
beforeAll(ensureBuilt, 120_000);

const ADMIT = JSON.stringify({
  judge: "quality_assessment",
  model: "claude-sonnet-4-6",
  session_key: "cli:cli:local",
  user_messages: ["hi"],
  assistant_messages: ["Hello! How can I help you today?"],
});

describe("a route asked with another method", () => {
  it.each([
    ["GET", "/v1/admit", "POST"],
    ["GET", "/v1/settle", "POST"],
    ["PUT", "/v1/assess", "POST"],
    ["POST", "/healthz", "GET"],
    ["DELETE", "/metrics", "GET"],
    ["POST", "/v1/sessions/cli%3Acli%3Alocal", "GET"],
    ["GET", "/v1/sessions/cli%3Acli%3Alocal/reset", "POST"],
  ])("%s %s answers 405 with Allow: %s", async (method, path, allow) => {
    const guard = createGuard({ ledger: ":memory:", logger: "silent" });
    const s = await serve({ guard, log: createLogger("silent"), port: 0, token: TOKEN });
    running.push(s);
    const res = await fetch(`${s.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      ...(method !== "GET" && { body: "{}" }),
    });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe(allow);
    expect(await res.json()).toEqual({
      error: { code: "METHOD_NOT_ALLOWED", message: `${path} answers ${allow} only` },
    });
  });

  it("a path that is no route is still a 404", async () => {
    const guard = createGuard({ ledger: ":memory:", logger: "silent" });
    const s = await serve({ guard, log: createLogger("silent"), port: 0, token: TOKEN });
    running.push(s);
    const res = await fetch(`${s.url}/v1/admitt`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(404);
    expect(res.headers.get("allow")).toBeNull();
  });
});

describe("SIGTERM with a reservation not settled", () => {
  it("says that it waits, for what and how long, then takes the settlement and stops", async () => {
    const child = spawn(process.execPath, [BIN, "serve", "--port", "0"], {
      env: {
        PATH: process.env.PATH ?? "",
        JUDGE_GUARD_DB: join(tmp(), "ledger.db"),
        JUDGE_GUARD_TOKEN: TOKEN,
      },
    });
    let out = "";
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d;
    });
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => {
        out += d;
        const m = /serving on (http:\/\/[^ ]+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on("exit", (c) => reject(new Error(`serve exited ${c}: ${err}`)));
    });
    const headers = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
    const admitted = (await (
      await fetch(`${url}/v1/admit`, { method: "POST", headers, body: ADMIT })
    ).json()) as {
      reservation_id: string;
    };
    const exited = new Promise<number | null>((r) => child.on("exit", r));
    child.kill("SIGTERM");
    for (let i = 0; i < 200 && !/shutting down: waiting/.test(err); i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(err).toMatch(
      /shutting down: waiting up to 10 s for 1 admitted call to settle; what has not settled by then is charged its estimate/,
    );
    const settled = await fetch(`${url}/v1/settle`, {
      method: "POST",
      headers,
      body: JSON.stringify({
        reservation_id: admitted.reservation_id,
        ok: true,
        usage: { input_tokens: 900, output_tokens: 300 },
      }),
    });
    expect(settled.status).toBe(200);
    expect(await exited).toBe(0);
    expect(out).toContain("judge-guard stopped");
    expect(err).not.toMatch(/charged the estimates of calls never settled/);
  });
});
