// Sidecar: admit + settle over loopback HTTP (the client's two requests per judge call) against a
// bare HTTP echo server in the same run, the floor for two round trips through node:http and
// fetch. Sequential latency (p50, p99) and throughput with 16 calls in flight.
import { createServer } from "node:http";
import { createClient } from "../dist/client/client.js";
import { createGuard } from "../dist/index.js";
import { createLogger } from "../dist/log/logger.js";
import { serve } from "../dist/server/server.js";
import { fmt, now, summarize, table, tempDir, UNCAPPED, us } from "./lib.mjs";

const N = Number(process.env.BENCH_SIDECAR_CALLS ?? 2000);
const noop = async () => ({ inputTokens: 1200, outputTokens: 300 });

async function echoServer() {
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
      res.end(body);
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => server.close(r)),
  };
}

async function measure(fn, inFlight) {
  for (let i = 0; i < 200; i++) await fn(-1 - i); // warm-up
  const lat = [];
  const t0 = now();
  for (let i = 0; i < N; i += inFlight) {
    await Promise.all(
      Array.from({ length: Math.min(inFlight, N - i) }, async (_, j) => {
        const a = now();
        await fn(i + j);
        lat.push(us(now() - a));
      }),
    );
  }
  const seconds = Number(now() - t0) / 1e9;
  return { ...summarize(lat), perSecond: N / seconds };
}

export async function run() {
  const tmp = tempDir();
  const guard = createGuard({
    ledger: `${tmp.dir}/ledger.db`,
    logger: "silent",
    ...UNCAPPED,
  });
  const sidecar = await serve({
    guard,
    log: createLogger("silent"),
    port: 0,
    token: "bench-token-0123456789",
  });
  const client = createClient({ url: sidecar.url, token: "bench-token-0123456789" });
  const echo = await echoServer();
  const body = JSON.stringify({
    judge: "observation_extraction",
    model: "claude-sonnet-4-6",
    session_key: "k",
    user_messages: ["q"],
    assistant_messages: ["a"],
  });
  const bare = async () => {
    for (let k = 0; k < 2; k++)
      await (
        await fetch(`${echo.url}/x`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        })
      ).text();
  };
  const guarded = (i) =>
    client.run(
      {
        judge: "observation_extraction",
        model: "claude-sonnet-4-6",
        sessionKey: `k${i & 63}`,
        userMessages: [`q${i}`],
        assistantMessages: [`answer ${i}`],
      },
      noop,
    );
  const rows = [];
  for (const inFlight of [1, 16]) {
    const b = await measure(bare, inFlight);
    const g = await measure(guarded, inFlight);
    rows.push({
      "in flight": inFlight,
      "admit+settle p50 µs": fmt(g.p50, 0),
      "p99 µs": fmt(g.p99, 0),
      "echo x2 p50 µs": fmt(b.p50, 0),
      "echo p99 µs": fmt(b.p99, 0),
      "calls/s": fmt(g.perSecond, 0),
      "echo pairs/s": fmt(b.perSecond, 0),
      "throughput ratio": fmt(g.perSecond / b.perSecond, 2),
    });
  }
  await echo.close();
  await sidecar.close();
  tmp.remove();
  console.log(
    `\n## sidecar over loopback (${N} judge calls a case: admit + no-op judge + settle; baseline: two echo round trips)`,
  );
  table(rows);
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
