// The README's webhook receiver, compiled as a user would paste it and run as a real Node
// process, against deliveries from the real webhookSink: it acts once per event, however often
// a captured delivery is replayed (issue 13, item 7: with the header as the key, one capture
// replayed with fresh Idempotency-Keys made the receiver act 6 times).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type BudgetAlertEvent,
  IDEMPOTENCY_HEADER,
  SIGNATURE_HEADER,
  type StuckSessionEvent,
  sign,
  verifyWebhook,
  webhookSink,
} from "../../src/index.js";
import { ensureBuilt, ROOT } from "../helpers/cli.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const SECRET = "readme-receiver-secret-0123456789";
const MARKER = "<!-- run by test/signals/readme-receiver.test.ts -->";
const children: ChildProcess[] = [];
beforeAll(() => ensureBuilt());
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

/** The README's receiver block. */
function readmeReceiver(): string {
  const lines = readFileSync(join(ROOT, "README.md"), "utf8").split("\n");
  const at = lines.findIndex((l) => l.trim() === MARKER);
  if (at === -1 || lines[at + 1]?.trim() !== "```ts")
    throw new Error(`README.md: no \`\`\`ts block after ${MARKER}`);
  const close = lines.findIndex((l, i) => i > at + 1 && l.trim() === "```");
  return lines.slice(at + 2, close).join("\n");
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/**
 * Compiles the block with `judge-guard` resolving to this build (strict, as the project's own
 * code), then runs it. `forceFreshSession` is the reader's; here it reports each act on stdout.
 */
async function startReceiver(): Promise<{ url: string; acted: () => string[] }> {
  const dir = tmp();
  mkdirSync(join(dir, "node_modules"));
  symlinkSync(ROOT, join(dir, "node_modules", "judge-guard"), "dir");
  symlinkSync(join(ROOT, "node_modules", "@types"), join(dir, "node_modules", "@types"), "dir");
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        types: ["node"],
        strict: true,
        noUncheckedIndexedAccess: true,
        skipLibCheck: true,
        outDir: "out",
      },
      files: ["receiver.ts"],
    }),
  );
  writeFileSync(
    join(dir, "receiver.ts"),
    `${readmeReceiver()}\n\nfunction forceFreshSession(key: string): void {\n  process.stdout.write(\`\${JSON.stringify({ acted: key })}\\n\`);\n}\n`,
  );
  const compiled = await new Promise<{ code: number; out: string }>((resolve) =>
    execFile(
      process.execPath,
      [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(dir, "tsconfig.json")],
      { cwd: dir, timeout: 120_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    ),
  );
  expect(compiled, "the README's receiver compiles").toEqual({ code: 0, out: "" });

  const port = await freePort();
  const child = spawn(process.execPath, [join(dir, "out", "receiver.js")], {
    env: { ...process.env, PORT: String(port), JUDGE_GUARD_WEBHOOK_SECRET: SECRET },
  });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const url = `http://127.0.0.1:${port}/judge-guard`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`the receiver exited: ${stderr}`);
    const up = await fetch(url, { method: "POST", body: "{}" }).then(
      (r) => r.status === 401,
      () => false,
    );
    if (up) break;
    if (i > 100) throw new Error(`the receiver did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const acted = () =>
    stdout
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => (JSON.parse(l) as { acted: string }).acted);
  return { url, acted };
}

interface Captured {
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Delivers `event` through the real webhookSink and keeps what went on the wire. */
async function deliver(url: string, event: StuckSessionEvent | BudgetAlertEvent): Promise<Captured> {
  let captured: Captured | undefined;
  const sink = webhookSink({
    url,
    secret: SECRET,
    retries: 0,
    fetch: (input, init) => {
      captured = { headers: { ...(init?.headers as Record<string, string>) }, body: String(init?.body) };
      return fetch(input, init);
    },
  });
  expect(await sink.send(event)).toEqual({ attempts: 1 });
  return captured!;
}

async function replay(url: string, c: Captured, headers: Record<string, string | undefined>) {
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...c.headers, ...headers })) if (v !== undefined) merged[k] = v;
  const res = await fetch(url, { method: "POST", headers: merged, body: c.body });
  return { status: res.status, text: await res.text() };
}

const stuck = (episode: string, key: string): StuckSessionEvent => ({
  type: "stuck_session",
  session_key: key,
  reason: "stuck_session",
  fingerprint: "6a81a5e5a06166c1",
  repeats: 3,
  episode_id: episode,
  ts: new Date().toISOString(),
});

describe("the README's webhook receiver", () => {
  it("acts once per episode: a capture replayed with fresh Idempotency-Keys, the same key, or none does nothing", async () => {
    const r = await startReceiver();
    const first = await deliver(r.url, stuck(randomUUID(), "cli:cli:local"));
    // The receiver's stdout may reach this process after its HTTP answer: wait for the line.
    await expect.poll(() => r.acted()).toEqual(["cli:cli:local"]);

    // The attack: the same signed body and signature, five times, each with a fresh key.
    for (let i = 0; i < 5; i++) {
      const again = await replay(r.url, first, { [IDEMPOTENCY_HEADER]: randomUUID() });
      expect(again.status).toBe(401);
      expect(again.text).toBe("idempotency-key does not match the signed event's id");
    }
    // Without the header, or with the true one (a retry): recognised by the body's id.
    expect(await replay(r.url, first, { [IDEMPOTENCY_HEADER]: undefined })).toEqual({
      status: 200,
      text: "already done",
    });
    expect((await replay(r.url, first, {})).status).toBe(200);
    expect(r.acted()).toEqual(["cli:cli:local"]);

    // Another episode, even of the same key, is acted on; so is a budget alert, once.
    await deliver(r.url, stuck(randomUUID(), "cli:cli:local"));
    const alert: BudgetAlertEvent = {
      type: "budget_alert",
      level: "warning",
      scope: "global",
      session_key: null,
      reason: "global_budget",
      used: 40,
      cap: 50,
      window_start: new Date().toISOString(),
      alert_id: randomUUID(),
      ts: new Date().toISOString(),
    };
    const warned = await deliver(r.url, alert);
    expect((await replay(r.url, warned, { [IDEMPOTENCY_HEADER]: undefined })).text).toBe("already done");
    await expect.poll(() => r.acted()).toEqual(["cli:cli:local", "cli:cli:local"]);
  }, 150_000);
});

describe("verifyWebhook", () => {
  const event = stuck("3f2b8a1e-9c4d-4e5f-8a6b-7c8d9e0f1a2b", "k");
  const body = JSON.stringify(event);
  const sig = sign(body, SECRET);

  it("returns the signed body's id, and checks the Idempotency-Key against it when given", () => {
    expect(verifyWebhook(body, sig, SECRET)).toEqual({ ok: true, event, id: event.episode_id });
    expect(verifyWebhook(body, sig, SECRET, { idempotencyKey: event.episode_id })).toMatchObject({
      ok: true,
    });
    expect(verifyWebhook(body, sig, SECRET, { idempotencyKey: null })).toMatchObject({ ok: true });
    expect(verifyWebhook(body, sig, SECRET, { idempotencyKey: "fresh-key" })).toEqual({
      ok: false,
      reason: "idempotency-key does not match the signed event's id",
    });
    expect(verifyWebhook(body, sig, SECRET, { idempotencyKey: [event.episode_id, "x"] })).toMatchObject({
      ok: false,
    });
  });

  it("refuses a signature header sent twice, and an event without its id", () => {
    expect(verifyWebhook(body, [sig, sig], SECRET)).toEqual({
      ok: false,
      reason: `more than one ${SIGNATURE_HEADER} header`,
    });
    const noId = JSON.stringify({ ...event, episode_id: undefined });
    expect(verifyWebhook(noId, sign(noId, SECRET), SECRET)).toEqual({
      ok: false,
      reason: "event has no episode_id or alert_id",
    });
  });
});
