import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ZodType } from "zod";
import { LIMITS } from "../domain/limits.js";
import { ConfigError, isJudgeGuardError, JudgeGuardError } from "../errors.js";
import type { Guard } from "../guard/guard.js";
import { SKIP_CODES } from "../guard/outcome.js";
import type { Logger } from "../log/logger.js";
import { jsonErrorMessage } from "../util/json-error.js";
import { sleep } from "../util/sleep.js";
import {
  admissionToWire,
  assessmentToWire,
  fieldsOnTheWire,
  judgesFromWire,
  requestFromWire,
  sessionStateToWire,
  settlementFromWire,
} from "../wire/map.js";
import { admitBody, assessBody, missingField, settleBody } from "../wire/schema.js";

export interface ServeOptions {
  readonly guard: Guard;
  readonly log: Logger;
  /** @default "127.0.0.1" */
  readonly host?: string;
  /** 0 picks a free port. @default 8787 */
  readonly port?: number;
  /** Required on every route but /healthz and /readyz when set; required to bind a non-loopback address. */
  readonly token?: string;
  /** A reservation not settled within this long is released (its client died). @default 600000 */
  readonly reservationTimeoutMs?: number;
  /** On shutdown, how long settlements of calls already admitted are still taken. @default 10000 */
  readonly shutdownGraceMs?: number;
  /**
   * Connections served at once. At the limit a new connection takes the place of the one idle
   * the longest (connected or kept alive without a request in progress); when every one is in a
   * request, {@link HEALTHZ_RESERVE} more may ask `GET /healthz` only. @default 512
   */
  readonly maxConnections?: number;
  /** A client must have sent its request's headers within this long of connecting. @default 10000 */
  readonly headersTimeoutMs?: number;
  /** A client must have sent its whole request (headers and body) within this long. @default 30000 */
  readonly requestTimeoutMs?: number;
  /** A kept-alive connection with no request is closed after this long. @default 5000 */
  readonly keepAliveTimeoutMs?: number;
}

/** Connections beyond `maxConnections` kept for `GET /healthz` when all the others are in a request. */
export const HEALTHZ_RESERVE = 8;

/** Each connection: its requests in progress, and whether it is a reserve one (`/healthz` only). */
interface Connection {
  busy: number;
  readonly reserve: boolean;
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0)
    throw ConfigError.option(name, "a positive whole number", value, "serve");
  return value;
}

export interface RunningServer {
  readonly url: string;
  readonly server: Server;
  /** Stops accepting, finishes requests in flight, then closes the guard. */
  close(): Promise<void>;
}

/**
 * A request the sidecar refuses: its HTTP status, and the code the answer carries
 * (`BODY_TOO_LARGE`, `FIELD_INVALID`, `UNAUTHORIZED`, ...), which is the wire's, not an
 * error code: the error itself is `HTTP_REFUSED`.
 */
class HttpError extends JudgeGuardError {
  constructor(
    readonly status: number,
    readonly answer: string,
    message: string,
    readonly field?: string,
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super("HTTP_REFUSED", message);
  }
}

/** The method a route answers, for a 405 naming it (`Allow`) rather than a 404; undefined for no route. */
function allowedMethod(path: string): "GET" | "POST" | undefined {
  if (path === "/healthz" || path === "/readyz" || path === "/metrics") return "GET";
  if (path === "/v1/admit" || path === "/v1/settle" || path === "/v1/assess") return "POST";
  if (/^\/v1\/sessions\/[^/]+\/reset$/.test(path)) return "POST";
  if (/^\/v1\/sessions\/[^/]+$/.test(path)) return "GET";
  return undefined;
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const digest = (s: string) => createHash("sha256").update(s).digest();

async function readBody(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > LIMITS.bodyBytes)
    throw new HttpError(413, "BODY_TOO_LARGE", `the body is over ${LIMITS.bodyBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > LIMITS.bodyBytes)
      throw new HttpError(413, "BODY_TOO_LARGE", `the body is over ${LIMITS.bodyBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") throw new HttpError(400, "BODY_INVALID", "the body is empty: send a JSON object");
  try {
    return JSON.parse(text);
  } catch {
    // Say where, never what: V8's message quotes the body, which may hold transcript text.
    throw new HttpError(400, "BODY_INVALID", `the body is ${jsonErrorMessage(text)}`);
  }
}

function parse<T>(schema: ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body, { error: missingField });
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const field = issue.path.map(String).join(".") || "(body)";
  throw new HttpError(400, "FIELD_INVALID", `${field}: ${issue.message}`, field);
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers?: Readonly<Record<string, string>>,
): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    // After an oversize body the rest of it is not read: close rather than reuse the connection.
    ...(status === 413 && { connection: "close" }),
  });
  res.end(text);
}

const PATH_FIX = "send the path as the route names it, such as /v1/settle";

/**
 * The request's path, exactly as sent, for routing and for the shutdown check alike. Paths that
 * a URL parser would resolve into another path (dot segments, plain or percent-encoded, and
 * backslashes) and encoded slashes are refused rather than resolved: a path that names one
 * route must not reach another.
 */
function requestPath(target: string | undefined): string {
  const t = target ?? "";
  if (!t.startsWith("/"))
    throw new HttpError(
      400,
      "PATH_INVALID",
      `the request target must be a path starting with /: ${PATH_FIX}`,
    );
  const end = t.search(/[?#]/);
  const path = end === -1 ? t : t.slice(0, end);
  if (path.includes("\\"))
    throw new HttpError(400, "PATH_INVALID", `the path contains a backslash: ${PATH_FIX}`);
  if (/%(2f|5c)/i.test(path))
    throw new HttpError(
      400,
      "PATH_INVALID",
      `the path contains an encoded slash (%2F or %5C): ${PATH_FIX} (a session key containing / or \\ cannot be named in a path)`,
    );
  if (path.split("/").some((segment) => /^(\.|%2e){1,2}$/i.test(segment)))
    throw new HttpError(400, "PATH_INVALID", `the path contains a . or .. segment: ${PATH_FIX}`);
  return path;
}

function hostOf(header: string | undefined): string {
  if (!header) return "";
  const h = header.trim().toLowerCase();
  return h.startsWith("[") ? h.slice(1, h.indexOf("]")) : h.replace(/:\d+$/, "");
}

/**
 * `judge-guard serve`: the guard as a small HTTP service next to the agent, so that runtimes
 * that cannot load the SQLite driver (Phantom runs on Bun) share one guard and one ledger.
 */
export async function serve(o: ServeOptions): Promise<RunningServer> {
  const host = o.host ?? "127.0.0.1";
  if (!isLoopback(host) && !o.token) {
    throw new ConfigError(
      "JUDGE_GUARD_TOKEN",
      `refusing to listen on ${host} without a token: set JUDGE_GUARD_TOKEN, or bind 127.0.0.1`,
    );
  }
  const { guard, log } = o;
  const maxConnections = positiveInt("maxConnections", o.maxConnections, 512);
  const headersTimeout = positiveInt("headersTimeoutMs", o.headersTimeoutMs, 10_000);
  const requestTimeout = positiveInt("requestTimeoutMs", o.requestTimeoutMs, 30_000);
  const keepAliveTimeout = positiveInt("keepAliveTimeoutMs", o.keepAliveTimeoutMs, 5_000);
  if (headersTimeout > requestTimeout)
    throw new ConfigError(
      "headersTimeoutMs",
      `option headersTimeoutMs of serve (${headersTimeout}) must not exceed requestTimeoutMs (${requestTimeout})`,
    );
  const expected = o.token ? digest(o.token) : undefined;
  const registry = new Registry();
  const latency = new Histogram({
    name: "judge_guard_request_seconds",
    help: "HTTP request latency by route and status",
    labelNames: ["route", "status"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [registry],
  });
  const released = new Counter({
    name: "judge_guard_reservations_expired_total",
    help: "reservations released after the timeout",
    registers: [registry],
  });
  // Cumulative figures are counters fed from the guard's own counts at scrape time.
  const fed = (counter: Counter, read: () => number, labels: Record<string, string> = {}) => {
    let last = 0;
    return () => {
      const now = read();
      if (now > last) counter.inc(labels, now - last);
      last = now;
    };
  };
  const counter = (name: string, help: string, labelNames: string[] = []) =>
    new Counter({ name, help, labelNames, registers: [registry] });
  const decisions = counter("judge_guard_decisions_total", "decisions by outcome and reason", [
    "outcome",
    "reason",
  ]);
  const deliveries = counter("judge_guard_signal_deliveries_total", "signal deliveries by status", [
    "status",
  ]);
  const feeders = [
    fed(decisions, () => guard.stats.judged, { outcome: "judged", reason: "" }),
    fed(decisions, () => guard.stats.failed, { outcome: "failed", reason: "" }),
    fed(decisions, () => guard.stats.reused, { outcome: "reused", reason: "duplicate" }),
    ...(Object.keys(SKIP_CODES) as Array<keyof typeof SKIP_CODES>).map((reason) =>
      fed(decisions, () => guard.stats.skipped[reason], { outcome: "skipped", reason }),
    ),
    fed(counter("judge_guard_charged_usd_total", "USD charged to the budgets"), () => guard.stats.chargedUsd),
    fed(counter("judge_guard_saved_usd_total", "USD saved by skips"), () => guard.stats.savedUsd),
    fed(deliveries, () => guard.stats.signalsDelivered, { status: "delivered" }),
    fed(deliveries, () => guard.stats.signalsFailed, { status: "failed" }),
    fed(counter("judge_guard_ledger_errors_total", "ledger failures"), () => guard.stats.ledgerErrors),
    fed(
      counter("judge_guard_stuck_episodes_total", "stuck episodes opened"),
      () => guard.stats.stuckEpisodes,
    ),
  ];
  new Gauge({
    name: "judge_guard_reservations_open",
    help: "reservations admitted and not settled",
    registers: [registry],
    collect() {
      this.set(guard.openTickets().length);
    },
  });
  new Gauge({
    name: "judge_guard_ledger_available",
    help: "1 while the ledger file can be used, 0 while calls fail as JUDGE_GUARD_ON_ERROR says",
    registers: [registry],
    collect() {
      this.set(guard.ledgerFault === null ? 1 : 0);
    },
  });
  new Gauge({
    name: "judge_guard_stuck_keys",
    help: "session keys stuck right now",
    registers: [registry],
    collect() {
      this.set(guard.stats.stuckKeys);
    },
  });

  let inFlight = 0;
  let idle: (() => void) | undefined;
  let closing = false;

  const route = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<string> => {
    if (!expected && !isLoopback(hostOf(req.headers.host))) {
      // Without a token only loopback callers are expected: a foreign Host is DNS rebinding.
      throw new HttpError(
        403,
        "FORBIDDEN",
        "without JUDGE_GUARD_TOKEN only requests to a loopback host are served",
      );
    }
    if (path === "/healthz" && req.method === "GET") {
      // The sidecar answers (failing as JUDGE_GUARD_ON_ERROR says) even while its ledger does not.
      send(res, 200, { ok: true, ledger: guard.ledgerFault === null ? "ok" : "unavailable" });
      return "/healthz";
    }
    if (path === "/readyz" && req.method === "GET") {
      // Ready: guarding with its ledger. A probe that should hold an agent back (a fleet's
      // database unreachable, a wrong password) asks this, not /healthz. Why is in the log.
      const ready = guard.ledgerFault === null;
      send(res, ready ? 200 : 503, { ready, ledger: ready ? "ok" : "unavailable" });
      return "/readyz";
    }
    if (expected) {
      const auth = req.headers.authorization ?? "";
      const given = /^bearer /i.test(auth) ? digest(auth.slice(7).trim()) : undefined;
      if (!given || !timingSafeEqual(given, expected))
        throw new HttpError(401, "UNAUTHORIZED", "missing or wrong bearer token");
    }
    const method = req.method ?? "GET";
    const allow = allowedMethod(path);
    if (allow !== undefined && method !== allow) {
      throw new HttpError(405, "METHOD_NOT_ALLOWED", `${path} answers ${allow} only`, undefined, {
        allow,
      });
    }
    if (method === "POST" && !/^application\/json\b/i.test(req.headers["content-type"] ?? "")) {
      // A browser page cannot send application/json across origins without a preflight.
      throw new HttpError(415, "CONTENT_TYPE", "send the body as content-type: application/json");
    }
    if (path === "/metrics" && method === "GET") {
      for (const feed of feeders) feed();
      const text = await registry.metrics();
      res.writeHead(200, { "content-type": registry.contentType });
      res.end(text);
      return "/metrics";
    }
    if (path === "/v1/admit" && method === "POST") {
      const body = parse(admitBody, await readBody(req));
      // Should this sidecar die, the call goes on: its settlement is still awaited this long.
      const out = await guard.admit(requestFromWire(body), {
        waitMs: body.wait_ms ?? defaultWaitMs,
        ttlMs: timeoutMs,
      });
      if (out.status === "admitted" && (res.destroyed || req.socket.destroyed)) {
        // The client gave up while the admission waited: the call will never be made. Release
        // the reservation without a charge (a failed call that reported no cost).
        guard.settle(out.reservationId, { ok: false });
        return "/v1/admit";
      }
      send(res, 200, admissionToWire(out, body.substitute));
      return "/v1/admit";
    }
    if (path === "/v1/settle" && method === "POST") {
      const b = parse(settleBody, await readBody(req));
      const r = guard.settle(b.reservation_id, settlementFromWire(b));
      send(res, 200, { charged_usd: r.costUsd });
      return "/v1/settle";
    }
    if (path === "/v1/assess" && method === "POST") {
      const body = parse(assessBody, await readBody(req));
      send(res, 200, assessmentToWire(guard.assess(requestFromWire(body), judgesFromWire(body))));
      return "/v1/assess";
    }
    const session = /^\/v1\/sessions\/([^/]+)(\/reset)?$/.exec(path);
    if (session) {
      let key: string;
      try {
        key = decodeURIComponent(session[1]!);
      } catch {
        throw new HttpError(
          400,
          "FIELD_INVALID",
          "the session key in the path is not valid URL encoding",
          "session_key",
        );
      }
      if (key.length > LIMITS.label)
        throw new HttpError(
          400,
          "FIELD_INVALID",
          `the session key is over ${LIMITS.label} characters`,
          "session_key",
        );
      if (session[2] && method === "POST") {
        guard.resetSession(key);
        send(res, 200, { reset: true, session: sessionStateToWire(guard.session(key)) });
        return "/v1/sessions/:key/reset";
      }
      if (!session[2] && method === "GET") {
        send(res, 200, sessionStateToWire(guard.session(key)));
        return "/v1/sessions/:key";
      }
    }
    throw new HttpError(404, "NOT_FOUND", `no route ${method} ${path}`);
  };

  const refuse = (res: ServerResponse, e: HttpError) =>
    send(
      res,
      e.status,
      { error: { code: e.answer, message: e.message, ...(e.field && { field: e.field }) } },
      e.headers,
    );

  /** Serves one request on a regular connection (not a reserve one). */
  const handle = (req: IncomingMessage, res: ServerResponse, path: string) => {
    // Shutting down: no new admissions, but the calls already admitted may still settle.
    if (closing && !(req.method === "POST" && path === "/v1/settle")) {
      send(res, 503, { error: { code: "SHUTTING_DOWN", message: "the guard is shutting down" } });
      return;
    }
    inFlight++;
    const stop = latency.startTimer();
    route(req, res, path)
      .then((r) => stop({ route: r, status: String(res.statusCode) }))
      .catch((e: unknown) => {
        if (e instanceof HttpError) refuse(res, e);
        else if (isJudgeGuardError(e)) {
          const field = (e as { field?: string }).field;
          send(res, e.code === "GUARD_CLOSED" || e.code === "LEDGER_FAULT" ? 503 : 400, {
            error: {
              code: e.code,
              message: field ? fieldsOnTheWire(e.message) : e.message,
              ...(field && { field: fieldsOnTheWire(field) }),
            },
          });
        } else {
          log.error({ err: (e as Error)?.message }, "request failed");
          send(res, 500, { error: { code: "INTERNAL", message: "internal error (see the server's log)" } });
        }
        stop({ route: "error", status: String(res.statusCode) });
      })
      .finally(() => {
        inFlight--;
        if (inFlight === 0) idle?.();
      });
  };

  // Idle the longest first: a connection goes to the back when it connects and when its last
  // request in progress ends (a Map keeps insertion order), so the one to give way is in front.
  const connections = new Map<Socket, Connection>();
  let reserved = 0;
  const forget = (socket: Socket) => {
    const c = connections.get(socket);
    if (c === undefined) return;
    connections.delete(socket);
    if (c.reserve) reserved--;
  };
  /** Closes the connection idle the longest: never the one of a request in progress. */
  const makeRoom = (): void => {
    for (const [socket, c] of connections) {
      if (c.reserve || c.busy > 0) continue;
      forget(socket);
      socket.destroy();
      return;
    }
  };

  const server = createServer(
    {
      headersTimeout,
      requestTimeout,
      keepAliveTimeout,
      // Node checks the two timeouts above only this often (30 s by default): a client sending
      // its headers slowly lived 29 s.
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
    },
    (req, res) => {
      const conn = connections.get(req.socket);
      if (conn !== undefined) {
        conn.busy++;
        res.once("close", () => {
          if (--conn.busy > 0 || !connections.has(req.socket)) return;
          connections.delete(req.socket);
          connections.set(req.socket, conn);
        });
      }
      let path: string;
      try {
        path = requestPath(req.url);
      } catch (e) {
        refuse(res, e as HttpError);
        return;
      }
      if (conn?.reserve) {
        // A connection beyond the limit, kept for health checks: answer, then close it.
        res.shouldKeepAlive = false;
        if (path === "/healthz" && req.method === "GET") send(res, 200, { ok: true });
        else
          send(res, 503, {
            error: {
              code: "SERVER_BUSY",
              message: `all ${maxConnections} connections are in a request: retry shortly (GET /healthz still answers)`,
            },
          });
        return;
      }
      handle(req, res, path);
    },
  );
  server.on("connection", (socket: Socket) => {
    if (connections.size - reserved >= maxConnections) makeRoom();
    const reserve = connections.size - reserved >= maxConnections;
    if (reserve && reserved >= HEALTHZ_RESERVE) {
      socket.destroy();
      return;
    }
    connections.set(socket, { busy: 0, reserve });
    if (reserve) reserved++;
    socket.once("close", () => forget(socket));
  });

  // A client that died must not hold budget forever.
  const timeoutMs = o.reservationTimeoutMs ?? 600_000;
  // An admission answers within the client's patience (`wait_ms`), by default well within 30 s.
  const defaultWaitMs = 20_000;
  const sweeper = setInterval(
    () => {
      for (const t of guard.openTickets()) {
        if (t.ageMs < timeoutMs) continue;
        try {
          guard.settle(t.reservationId, { ok: false, expired: true });
          released.inc();
          log.warn(
            { reservationId: t.reservationId, ageMs: Math.round(t.ageMs) },
            "released a reservation its client never settled",
          );
        } catch {
          // Settled meanwhile.
        }
      }
    },
    Math.min(10_000, Math.max(50, timeoutMs / 4)),
  );
  sweeper.unref();

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 8787, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;

  return {
    url,
    server,
    async close() {
      closing = true;
      const graceMs = o.shutdownGraceMs ?? 10_000;
      const grace = Date.now() + graceMs;
      const admitted = guard.openTickets().length;
      if (inFlight > 0 || admitted > 0) {
        // Say so: a shutdown that waits in silence looks hung.
        const what = [
          ...(inFlight > 0 ? [`${inFlight} ${inFlight === 1 ? "request" : "requests"} in flight`] : []),
          ...(admitted > 0 ? [`${admitted} admitted ${admitted === 1 ? "call" : "calls"} to settle`] : []),
        ].join(" and ");
        log.warn(
          { requests: inFlight, reservations: admitted, waitMs: graceMs },
          `shutting down: waiting up to ${graceMs / 1000} s for ${what}; what has not settled by then is charged its estimate`,
        );
      }
      // Requests already in (an admission may be waiting near a cap) finish first; then the calls
      // they admitted may still settle; what is left is charged at its estimate, not dropped.
      while (inFlight > 0 && Date.now() < grace) await sleep(20);
      while (guard.openTickets().length > 0 && Date.now() < grace) await sleep(20);
      const left = guard.openTickets();
      for (const t of left) guard.settle(t.reservationId, { ok: false, expired: true });
      if (left.length > 0) {
        released.inc(left.length);
        log.warn(
          { reservations: left.length },
          "shutting down: charged the estimates of calls never settled",
        );
      }
      clearInterval(sweeper);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      if (inFlight > 0) await new Promise<void>((r) => (idle = r));
      await guard.close();
    },
  };
}

export { HttpError };
