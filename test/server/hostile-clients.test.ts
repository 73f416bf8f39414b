// Attacks on the sidecar's HTTP edge (issue 13, items 8 and 10), against the real
// `judge-guard serve` in a child process: paths that route somewhere other than they look, and
// clients that hold connections without sending requests.
import { request as rawRequest } from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/cli.js";
import { SIDECAR_TOKEN, type Sidecar, startSidecar } from "../helpers/phantom.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const sidecars: Sidecar[] = [];
beforeAll(() => ensureBuilt());
afterEach(async () => {
  for (const s of sidecars.splice(0)) {
    s.child.kill("SIGKILL");
    await s.stop();
  }
});

async function sidecar(env: NodeJS.ProcessEnv = {}): Promise<Sidecar & { ledger: string }> {
  const ledger = join(tmp(), "ledger.db");
  const s = await startSidecar(ledger, { JUDGE_GUARD_LOG_LEVEL: "silent", ...env });
  sidecars.push(s);
  return { ...s, ledger };
}

/** What the routes probed here answer. */
interface Answer {
  readonly error?: { readonly code: string; readonly message: string };
  readonly decision?: string;
  readonly reservation_id?: string;
  readonly session_key?: string;
}

/**
 * One request with the path exactly as given: fetch and URL would resolve `..` and `%2e%2e`
 * before sending, which is what an attacker does not do.
 */
function raw(
  url: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Answer | undefined }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = rawRequest(
      {
        host: hostname,
        port,
        method,
        path,
        agent: false,
        headers: {
          authorization: `Bearer ${SIDECAR_TOKEN}`,
          "content-type": "application/json",
          ...(text !== undefined && { "content-length": Buffer.byteLength(text) }),
        },
      },
      (res) => {
        let data = "";
        res.setEncoding("utf8").on("data", (d: string) => {
          data += d;
        });
        res.on("end", () => {
          let json: Answer | undefined;
          try {
            json = JSON.parse(data);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

const admission = (key: string) => ({
  judge: "observation_extraction",
  model: "claude-sonnet-4-6",
  session_key: key,
  user_messages: ["q"],
  assistant_messages: ["a real reply with substance"],
});

describe("the sidecar's paths", () => {
  it("during the SIGTERM drain, a settle path with dot segments neither admits nor resets", async () => {
    const s = await sidecar();
    // One call admitted and not yet settled keeps the drain open: settlements still go in.
    const first = await raw(s.url, "POST", "/v1/admit", admission("k"));
    expect(first.json).toMatchObject({ decision: "judge" });
    s.child.kill("SIGTERM");
    for (let i = 0; i < 200; i++) {
      if ((await raw(s.url, "GET", "/healthz")).status === 503) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect((await raw(s.url, "GET", "/healthz")).status).toBe(503);

    // Each names /v1/settle to pass the drain check, and routed to another route before.
    for (const [method, path, body] of [
      ["POST", "/v1/settle/../admit", admission("k2")],
      ["POST", "/v1/settle/%2e%2e/admit", admission("k3")],
      ["POST", "/v1/settle/%2E%2e/sessions/k/reset", {}],
      ["POST", "/v1/settle/.%2e/sessions/k/reset", {}],
      ["POST", "/v1/settle/./../admit", admission("k4")],
      ["POST", "/v1/settle\\..\\admit", admission("k5")],
    ] as const) {
      const r = await raw(s.url, method, path, body);
      expect(r.status, path).toBe(400);
      expect(r.json?.error, path).toMatchObject({ code: "PATH_INVALID" });
      expect(r.json?.error?.message, path).toMatch(/send the path as the route names it/);
    }
    // The call admitted before the drain still settles.
    const settled = await raw(s.url, "POST", "/v1/settle", {
      reservation_id: first.json!.reservation_id,
      ok: true,
      usage: { input_tokens: 100, output_tokens: 10 },
    });
    expect(settled.status).toBe(200);
    const code = await new Promise<number | null>((r) =>
      s.child.exitCode !== null ? r(s.child.exitCode) : s.child.once("exit", r),
    );
    expect(code).toBe(0);
    const db = new Database(s.ledger, { readonly: true });
    const decisions = db.prepare("SELECT session_key AS k, decision FROM decisions").all();
    db.close();
    expect(decisions).toEqual([{ k: "k", decision: "judged" }]);
  });

  it("refuses dot segments and encoded slashes while serving too, rather than resolving them", async () => {
    const s = await sidecar();
    for (const path of [
      "/v1/sessions/../admit",
      "/v1/sessions/%2e%2e/sessions/k",
      "/v1/sessions/a%2Fb",
      "/v1/sessions/a%5cb",
      "/healthz/..",
      "http://127.0.0.1/v1/sessions/k",
    ]) {
      const r = await raw(s.url, "GET", path);
      expect(r.status, path).toBe(400);
      expect(r.json?.error?.code, path).toBe("PATH_INVALID");
    }
    // A key with dots in it is a key, not a dot segment; percent-encoding in a key still works.
    expect((await raw(s.url, "GET", "/v1/sessions/slack:C1:1795170600.204")).json).toMatchObject({
      session_key: "slack:C1:1795170600.204",
    });
    expect((await raw(s.url, "GET", "/v1/sessions/cli%3Acli%3Alocal")).json).toMatchObject({
      session_key: "cli:cli:local",
    });
    expect((await raw(s.url, "GET", "/v1/sessions/..k")).status).toBe(200);
  });
});

/** A raw TCP connection to the sidecar, and when the sidecar closed it. */
interface Held {
  readonly socket: Socket;
  readonly closed: Promise<number>;
}

function hold(url: string, send?: string): Promise<Held> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const opened = Date.now();
    const closed = new Promise<number>((r) => socket.once("close", () => r(Date.now() - opened)));
    socket.on("error", () => {}); // a reset by the server is what some of these wait for
    socket.resume();
    socket.once("connect", () => {
      if (send !== undefined) socket.write(send);
      resolve({ socket, closed });
    });
    socket.once("error", reject);
  });
}

describe("the sidecar's connections", () => {
  const held: Socket[] = [];
  afterEach(() => {
    for (const s of held.splice(0)) s.destroy();
  });

  it("600 idle sockets do not stop real requests, and are closed within 15 s", async () => {
    const s = await sidecar();
    const idle: Held[] = [];
    for (let i = 0; i < 600; i++) {
      // Some say nothing at all, some start a request and stop.
      const h = await hold(s.url, i % 2 === 0 ? undefined : "GET /healthz HTTP/1.1\r\n");
      held.push(h.socket);
      idle.push(h);
    }
    expect((await raw(s.url, "GET", "/healthz")).status).toBe(200);
    expect((await raw(s.url, "GET", "/v1/sessions/k")).json).toMatchObject({ session_key: "k" });
    expect((await raw(s.url, "POST", "/v1/admit", admission("k"))).json).toMatchObject({
      decision: "judge",
    });
    // The sidecar drops those it needed room for at once, and the rest at its header timeout
    // (10 s), not the 30 s of Node's default connection check.
    const lifetimes = await Promise.all(idle.map((h) => h.closed));
    expect(Math.max(...lifetimes)).toBeLessThan(15_000);
  }, 40_000);

  it("a client sending its headers a line a second is cut off within 15 s (it used to last 29 s)", async () => {
    const s = await sidecar();
    const within = (closed: Promise<number>) =>
      Promise.race([
        closed,
        new Promise<number>((r) => setTimeout(() => r(Number.POSITIVE_INFINITY), 25_000)),
      ]);
    const slow = await hold(s.url, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    // A kept-alive connection left idle after its request is closed too (after 5 s).
    const kept = await hold(s.url, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    held.push(slow.socket, kept.socket);
    let n = 0;
    const drip = setInterval(() => slow.socket.write(`x-drip-${n++}: 1\r\n`), 1000);
    const [slowFor, keptFor] = await Promise.all([within(slow.closed), within(kept.closed)]);
    clearInterval(drip);
    expect(slowFor).toBeLessThan(15_000);
    expect(keptFor).toBeLessThan(15_000);
  }, 40_000);

  it("with every connection busy in a request, /healthz still answers, and others get a 503 at once", async () => {
    const s = await sidecar();
    // 512 admissions that announce a body and send only part of it: each holds its connection
    // inside a request until the request timeout.
    const body = JSON.stringify(admission("k"));
    const head = (i: number) =>
      `POST /v1/admit HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${SIDECAR_TOKEN}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length + 10}\r\nX-N: ${i}\r\n\r\n${body.slice(0, 10)}`;
    for (let i = 0; i < 512; i++) held.push((await hold(s.url, head(i))).socket);
    // Give the server time to read every one of those heads (a loaded machine takes a moment):
    // a probe sent earlier would take a free slot and be answered. After that, a new request is
    // refused at once rather than queued.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await raw(s.url, "GET", "/healthz")).status).toBe(200);
    const busy = await raw(s.url, "GET", "/v1/sessions/k");
    expect(busy.status).toBe(503);
    expect(busy.json?.error?.code).toBe("SERVER_BUSY");
    expect(busy.json?.error?.message).toMatch(/retry/);
  }, 40_000);
});
