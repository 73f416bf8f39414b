import { type ChildProcess, spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import {
  createGuard,
  type Guard,
  isJudgeSkippedError,
  type OnLedgerError,
  SqliteStore,
} from "../../src/index.js";
import { ensureBuilt, spawnCli } from "../helpers/cli.js";
import { captureLogs } from "../helpers/logs.js";
import {
  AS_OTHER_USER,
  fileModesUnavailable,
  mountsUnavailable,
  openToOthers,
  readOnlyMount,
  remountWritable,
} from "../helpers/readonly.js";

/**
 * Temporary folders removed when `fn` ends. The tests here run concurrently (most wait for a
 * guard's heartbeat), so they cannot share `useTempDir`, whose afterEach removes every folder
 * once any one test ends.
 */
async function inTempDir<T>(fn: (dir: () => string) => Promise<T>): Promise<T> {
  const dirs: string[] = [];
  try {
    return await fn(() => {
      const d = mkdtempSync(join(tmpdir(), "judge-guard-test-"));
      dirs.push(d);
      return d;
    });
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
const PROBE = fileURLToPath(new URL("../fixtures/processes/ledger-probe.mjs", import.meta.url));
const root = process.getuid?.() === 0;
const NOBODY = 65534;

/** A ledger with one decision in it, closed cleanly (no -wal or -shm left beside it). */
async function existingLedger(path: string): Promise<void> {
  const g = createGuard({ ledger: path, logger: "silent" });
  await g.run(request("seed", 0), async () => ({ inputTokens: 1, outputTokens: 1 }));
  await g.close();
}

function request(key: string, i: number) {
  return {
    judge: "j",
    model: "claude-sonnet-4-6",
    sessionKey: key,
    userMessages: [`question ${i}`],
    assistantMessages: [`a real answer, number ${i}`],
  };
}

/** Gives a file or folder to the other user (as root), or the mode to this one. */
function giveBack(path: string, mode: number): void {
  if (root) chownSync(path, NOBODY, NOBODY);
  chmodSync(path, mode);
}

interface ReadOnlyCase {
  readonly skip: string | undefined;
  /** Makes the ledger read-only; returns its path, the command to run the child under, and the fix. */
  setup(dir: string): Promise<{
    ledger: string;
    wrap: readonly string[];
    fix: (child: ChildProcess) => void;
  }>;
}

const READ_ONLY: Record<string, ReadOnlyCase> = {
  "a read-only file": {
    skip: fileModesUnavailable,
    async setup(dir) {
      const folder = join(dir, "data");
      mkdirSync(folder);
      const ledger = join(folder, "ledger.db");
      await existingLedger(ledger);
      chmodSync(folder, 0o777); // SQLite may create -wal and -shm: only the file is read-only
      chmodSync(ledger, 0o444);
      // The other user's first attempt made -shm beside it, as read-only as the file: SQLite
      // gives them the file's mode. The operator's fix covers them too.
      const fix = () => {
        for (const f of [ledger, `${ledger}-wal`, `${ledger}-shm`]) if (existsSync(f)) giveBack(f, 0o600);
      };
      return { ledger, wrap: AS_OTHER_USER, fix };
    },
  },
  "a read-only folder (no ledger yet)": {
    skip: fileModesUnavailable,
    async setup(dir) {
      const folder = join(dir, "data");
      mkdirSync(folder);
      chmodSync(folder, 0o555);
      return { ledger: join(folder, "ledger.db"), wrap: AS_OTHER_USER, fix: () => giveBack(folder, 0o755) };
    },
  },
  "a read-only mount": {
    skip: mountsUnavailable,
    async setup(dir) {
      const folder = join(dir, "data");
      mkdirSync(folder);
      const ledger = join(folder, "ledger.db");
      await existingLedger(ledger);
      return {
        ledger,
        wrap: readOnlyMount(folder),
        fix: (child) => remountWritable(child.pid!, folder),
      };
    },
  },
};

interface ProbeLine {
  phase: string;
  status: string;
  code: string | null;
  made: number;
  ledgerErrors: number;
  fault: string | null;
}

/** Runs the probe under `wrap`; once it has made its first call, applies `fix`. */
async function probe(
  signals: string,
  ledger: string,
  onError: OnLedgerError,
  wrap: readonly string[],
  fix: (child: ChildProcess) => void,
) {
  chmodSync(signals, 0o777);
  const ready = join(signals, "ready");
  const fixed = join(signals, "fixed");
  const command = [...wrap, process.execPath, PROBE, ledger, onError, ready, fixed];
  const child = spawn(command[0]!, command.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((r) => child.on("close", r));
  const deadline = Date.now() + 20_000;
  while (!existsSync(ready) && child.exitCode === null && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  if (existsSync(ready)) {
    fix(child);
    writeFileSync(fixed, "");
  }
  const code = await exited;
  const lines = stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ProbeLine);
  const logs = stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { code, stderr, lines, logs };
}

describe.concurrent("a ledger that cannot be written at start-up (createGuard in a child process)", () => {
  for (const [name, c] of Object.entries(READ_ONLY)) {
    describe
      .skipIf(c.skip !== undefined)
      .concurrent(`${name}${c.skip ? ` (skipped: ${c.skip})` : ""}`, () => {
        it.each<[OnLedgerError, string]>([
          ["closed", "skipped"],
          ["open", "judged"],
        ])(
          "JUDGE_GUARD_ON_ERROR=%s: the guard starts, the call is %s, the file is named; once writable, the heartbeat opens it",
          (onError, status) =>
            inTempDir(async (tmp) => {
              ensureBuilt();
              const dir = tmp();
              openToOthers(dir);
              const { ledger, wrap, fix } = await c.setup(dir);
              const r = await probe(tmp(), ledger, onError, wrap, fix);
              expect(r.code, r.stderr).toBe(0);
              expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace, no uncaught exception
              const [start, after] = r.lines;
              expect(start).toMatchObject({
                phase: "start",
                status,
                code: status === "skipped" ? "LEDGER_UNAVAILABLE" : null,
                made: status === "judged" ? 1 : 0,
              });
              expect(start!.ledgerErrors).toBeGreaterThan(0);
              expect(start!.fault).toContain(ledger);
              expect(start!.fault).toMatch(/cannot be (written|opened)/);
              const failure = r.logs.find((l) => l.msg === "ledger failure");
              expect(failure).toMatchObject({ ledger, during: "start-up" });
              expect(String(failure!.err)).toContain(ledger);
              expect(String(failure!.err)).toMatch(/JUDGE_GUARD_DB/);
              // Made writable: the heartbeat opens it, judging is guarded again, and the settlement
              // of the call judged unguarded meanwhile is written too.
              expect(after).toMatchObject({ phase: "fixed", status: "judged", fault: null });
              expect(r.logs.some((l) => l.msg === "ledger available again")).toBe(true);
              const db = new Database(ledger, { readonly: true });
              const judged = db
                .prepare(
                  "SELECT count(*) AS n FROM decisions WHERE session_key = 'k' AND decision = 'judged'",
                )
                .pluck()
                .get();
              db.close();
              expect(judged).toBe(status === "judged" ? 2 : 1);
            }),
          60_000,
        );
      });
  }
});

const TOKEN = "a-token-for-the-read-only-sidecar";

async function http(url: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, text, json: text.startsWith("{") ? JSON.parse(text) : undefined };
}

const admitBody = (i: number) => ({
  judge: "j",
  model: "claude-sonnet-4-6",
  session_key: "k",
  user_messages: [`question ${i}`],
  assistant_messages: [`a real answer, number ${i}`],
});

describe
  .skipIf(fileModesUnavailable !== undefined)
  .concurrent(
    "judge-guard serve on a ledger folder it cannot write (a real child process as another user)",
    () => {
      it.each<[OnLedgerError, string]>([
        ["closed", "skip"],
        ["open", "judge"],
      ])(
        "JUDGE_GUARD_ON_ERROR=%s: it serves, answers %s, says why in one line; the heartbeat opens the ledger once it can",
        (onError, decision) =>
          inTempDir(async (tmp) => {
            ensureBuilt();
            const dir = tmp();
            openToOthers(dir);
            const folder = join(dir, "data");
            mkdirSync(folder);
            chmodSync(folder, 0o555);
            const ledger = join(folder, "ledger.db");
            const child = spawnCli(["serve", "--port", "0"], {
              wrap: AS_OTHER_USER,
              env: { JUDGE_GUARD_DB: ledger, JUDGE_GUARD_ON_ERROR: onError, JUDGE_GUARD_TOKEN: TOKEN },
            });
            let stdout = "";
            let stderr = "";
            child.stderr!.setEncoding("utf8").on("data", (d: string) => {
              stderr += d;
            });
            try {
              const url = await new Promise<string>((resolve, reject) => {
                child.stdout!.setEncoding("utf8").on("data", (d: string) => {
                  stdout += d;
                  const m = /serving on (http:\/\/[^ ]+)/.exec(stdout);
                  if (m) resolve(m[1]!);
                });
                child.on("exit", (c) => reject(new Error(`serve exited ${c}: ${stderr}`)));
              });
              const health = await http(url, "/healthz");
              expect(health.json).toEqual({ ok: true, ledger: "unavailable" });
              // Alive, but not ready: a probe that holds agents back until the ledger answers.
              const ready = await http(url, "/readyz");
              expect([ready.status, ready.json]).toEqual([503, { ready: false, ledger: "unavailable" }]);
              const first = await http(url, "/v1/admit", admitBody(1));
              expect(first.status).toBe(200);
              expect(first.json.decision).toBe(decision);
              if (decision === "skip") expect(first.json.code).toBe("LEDGER_UNAVAILABLE");
              else {
                const settled = await http(url, "/v1/settle", {
                  reservation_id: first.json.reservation_id,
                  ok: true,
                  usage: { input_tokens: 1000, output_tokens: 100 },
                });
                expect(settled.status).toBe(200);
              }
              expect((await http(url, "/metrics")).text).toMatch(/^judge_guard_ledger_available 0$/m);
              // One plain line naming the file, what is wrong, what to do and what happens meanwhile.
              const said = stderr.split("\n").find((l) => l.startsWith("judge-guard: "));
              expect(said).toContain(`the ledger ${ledger} cannot be written (permission denied (EACCES)`);
              expect(said).toContain("JUDGE_GUARD_DB");
              expect(said).toContain(`JUDGE_GUARD_ON_ERROR=${onError}`);
              expect(stderr).not.toMatch(/^\s+at /m);

              giveBack(folder, 0o755);
              const deadline = Date.now() + 15_000;
              while ((await http(url, "/healthz")).json.ledger !== "ok" && Date.now() < deadline)
                await new Promise((r) => setTimeout(r, 100));
              expect((await http(url, "/healthz")).json).toEqual({ ok: true, ledger: "ok" });
              const readyNow = await http(url, "/readyz");
              expect([readyNow.status, readyNow.json]).toEqual([200, { ready: true, ledger: "ok" }]);
              const second = await http(url, "/v1/admit", admitBody(2));
              expect(second.json.decision).toBe("judge");
              await http(url, "/v1/settle", { reservation_id: second.json.reservation_id, ok: true });
            } finally {
              if (child.exitCode === null) {
                const exited = new Promise((r) => child.on("exit", r));
                child.kill("SIGTERM");
                await exited;
              }
            }
            expect(child.exitCode).toBe(0);
            const db = new Database(ledger, { readonly: true });
            const judged = db
              .prepare("SELECT count(*) AS n FROM decisions WHERE decision = 'judged'")
              .pluck()
              .get();
            db.close();
            expect(judged).toBe(decision === "judge" ? 2 : 1);
          }),
        60_000,
      );
    },
  );

const until = async (what: () => boolean, ms: number) => {
  const deadline = Date.now() + ms;
  while (!what() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return what();
};

/** Spends on key `k` until the cap refuses; returns what was charged. */
async function spendAll(guard: Guard, from: number): Promise<number> {
  let charged = 0;
  for (let i = from; i < from + 40; i++) {
    const out = await guard.run(request("k", i), async () => ({ costUsd: 0.1 }));
    if (out.status === "judged") charged += out.costUsd;
    if (out.status === "skipped" && out.code === "SESSION_BUDGET") break;
  }
  return charged;
}

describe.concurrent("a ledger folder deleted while in use", () => {
  it(
    "the guard stops writing to the deleted file, puts its ledger back, and a fresh guard shares its budget",
    () =>
      inTempDir(async (tmp) => {
        const folder = join(tmp(), "data");
        const ledger = join(folder, "ledger.db");
        const { logger, lines } = captureLogs();
        const options = { logger, sessionBudgetUsd: 1, estimator: { defaultOutputTokens: 1 } } as const;
        const a = createGuard({ ledger, ...options });
        let spent = 0;
        for (let i = 0; i < 6; i++) {
          const out = await a.run(request("k", i), async () => ({ costUsd: 0.1 }));
          if (out.status === "judged") spent += out.costUsd;
        }
        rmSync(folder, { recursive: true, force: true });
        await new Promise((r) => setTimeout(r, 150));
        // The next call finds the file gone: it fails as configured (closed) instead of being written
        // to a file nobody else can see.
        const during = await a.run(request("k", 100), async () => ({ costUsd: 0.1 }));
        expect(during.status === "skipped" && during.code).toBe("LEDGER_UNAVAILABLE");
        if (during.status === "skipped")
          expect(during.error.message).toContain(`the ledger ${ledger} was deleted`);
        // The heartbeat puts the ledger back from the open copy.
        expect(await until(() => a.ledgerFault === null, 20_000)).toBe(true);
        expect(existsSync(ledger)).toBe(true);
        expect(statSync(ledger).mode & 0o777).toBe(0o600);
        const b = createGuard({ ledger, ...options });
        expect(b.session("k").spentUsd).toBeCloseTo(spent, 9);
        spent += (await spendAll(b, 200)) + (await spendAll(a, 300));
        await b.close();
        await a.close();
        console.log(
          `deleted ledger: $${spent.toFixed(2)} spent on a $1.00 cap by the guard that lost its folder and a fresh one`,
        );
        expect(spent).toBeLessThanOrEqual(1 + 0.1 + 1e-9);
        expect(a.stats.ledgerErrors).toBeGreaterThan(0);
        expect(lines.find((l) => l.msg === "ledger failure")).toMatchObject({ ledger });
        expect(lines.find((l) => l.msg === "ledger available again")).toMatchObject({
          ledger,
          how: "restored it from this process's open copy after it was deleted",
        });
        const db = new Database(ledger, { readonly: true });
        expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
        db.close();
      }),
    40_000,
  );
});

/** Overwrites `length` bytes of the file at `offset` with garbage, as a stray writer would. */
function overwrite(path: string, offset: number, length: number): void {
  const fd = openSync(path, "r+");
  writeSync(fd, Buffer.alloc(length, 0xa5), 0, length, offset);
  closeSync(fd);
}

describe.concurrent("bytes overwritten in the ledger while in use", () => {
  it.each<[OnLedgerError, string]>([
    ["closed", "skipped"],
    ["open", "judged"],
  ])(
    "pages past the header (JUDGE_GUARD_ON_ERROR=%s): the integrity check finds them, calls are %s until an operator acts, and a fresh guard does not start a second budget",
    (onError, status) =>
      inTempDir(async (tmp) => {
        const dir = tmp();
        const ledger = join(dir, "ledger.db");
        const { logger, lines } = captureLogs();
        const store = new SqliteStore(ledger, { whenUnavailable: "retry", integrityCheckMs: 200 });
        const a = createGuard({ ledger: store, logger, onError });
        const work = async (g: Guard, i: number) =>
          g.run(request(`k${i % 5}`, i), async () => ({ inputTokens: 1000, outputTokens: 100 }));
        for (let i = 0; i < 50; i++) await work(a, i);
        // The checkpoint worker copies the WAL into the file in the background: wait for it.
        for (let waited = 0; statSync(ledger).size <= 4 * 4096 && waited < 15_000; waited += 50)
          await new Promise((r) => setTimeout(r, 50));
        const size = statSync(ledger).size;
        expect(size).toBeGreaterThan(4 * 4096);
        overwrite(ledger, 4096, size - 4096);
        const overwritten = Date.now();
        // Found by the integrity check, or by the first statement that reads a bad page.
        let made = 0;
        const judge = async () => {
          made++;
          return { inputTokens: 1000, outputTokens: 100 };
        };
        for (let i = 0; i < 100 && a.ledgerFault === null; i++) {
          await work(a, 100 + i);
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(a.ledgerFault?.message).toContain(`the ledger ${ledger} is corrupt`);
        console.log(
          `overwritten pages (${onError}): found ${Date.now() - overwritten} ms later, ${(size / 1024).toFixed(0)} KiB file`,
        );
        const out = await a.run(request("k0", 1000), judge);
        expect(out.status).toBe(status);
        expect(made).toBe(status === "judged" ? 1 : 0);
        if (out.status === "skipped") {
          expect(isJudgeSkippedError(out.error, "LEDGER_UNAVAILABLE")).toBe(true);
          expect(out.error.message).toContain(`the ledger ${ledger} is corrupt`);
        }
        const failure = lines.find((l) => l.msg === "ledger failure" && String(l.err).includes("corrupt"));
        expect(failure).toMatchObject({ ledger });
        expect(String(failure!.err)).toMatch(
          /is corrupt \(.+\): judge-guard never repairs a ledger; stop every/,
        );

        // A fresh guard on the same file fails the same way: it does not start a second budget.
        const b = createGuard({ ledger, logger: "silent", onError });
        const fresh = await b.run(request("k0", 2000), judge);
        expect(fresh.status).toBe(status);
        expect(b.ledgerFault?.message).toContain(`the ledger ${ledger} is corrupt`);
        await b.close();

        // A heartbeat later, still failing: a corrupt ledger is not reopened behind the operator's back.
        await new Promise((r) => setTimeout(r, 5500));
        expect(a.ledgerFault?.message).toContain("is corrupt");
        expect((await a.run(request("k0", 3000), judge)).status).toBe(status);
        await a.close();
        store.close();
      }),
    30_000,
  );

  it(
    "the header: the heartbeat finds it",
    () =>
      inTempDir(async (tmp) => {
        const ledger = join(tmp(), "ledger.db");
        const { logger, lines } = captureLogs();
        // A 3 s lease: a heartbeat every second (a third of it), so a loaded machine still finds
        // the fault well within the wait below.
        const a = createGuard({ ledger, logger, leaseMs: 3000 });
        for (let i = 0; i < 20; i++)
          await a.run(request(`k${i % 5}`, i), async () => ({ inputTokens: 1000, outputTokens: 100 }));
        await new Promise((r) => setTimeout(r, 600)); // the worker has checkpointed the WAL
        overwrite(ledger, 0, 100);
        const overwritten = Date.now();
        expect(await until(() => a.ledgerFault !== null, 20_000)).toBe(true);
        console.log(`overwritten header: found ${Date.now() - overwritten} ms later (on the heartbeat)`);
        const out = await a.run(request("k0", 1000), async () => ({ inputTokens: 1, outputTokens: 1 }));
        expect(out.status === "skipped" && out.code).toBe("LEDGER_UNAVAILABLE");
        expect(String(lines.find((l) => l.msg === "ledger failure")?.err)).toContain(
          `the ledger ${ledger} is corrupt (its first bytes are not a SQLite header`,
        );
        await a.close();
      }),
    40_000,
  );
});

describe.concurrent("a ledger replaced while in use", () => {
  it(
    "a new folder in place of the old one: the guard switches to the file there",
    () =>
      inTempDir(async (tmp) => {
        const dir = tmp();
        const folder = join(dir, "data");
        const ledger = join(folder, "ledger.db");
        const { logger, lines } = captureLogs();
        const a = createGuard({ ledger, logger });
        await a.run(request("k", 1), async () => ({ inputTokens: 1000, outputTokens: 100 }));
        // The volume is swapped: the old folder moves away, a new one with a ledger takes its place.
        renameSync(folder, join(dir, "data.old"));
        mkdirSync(folder);
        await existingLedger(ledger);
        await new Promise((r) => setTimeout(r, 150));
        const during = await a.run(request("k", 2), async () => ({ inputTokens: 1, outputTokens: 1 }));
        expect(during.status === "skipped" && during.error.message).toContain(
          `the ledger ${ledger} was replaced by another file while in use`,
        );
        expect(await until(() => a.ledgerFault === null, 20_000)).toBe(true);
        expect((await a.run(request("k", 3), async () => ({ inputTokens: 1, outputTokens: 1 }))).status).toBe(
          "judged",
        );
        await a.close();
        expect(String(lines.find((l) => l.msg === "ledger available again")?.how)).toContain(
          "switched to the file",
        );
        const db = new Database(ledger, { readonly: true });
        const keys = db.prepare("SELECT session_key FROM decisions WHERE decision = 'judged'").pluck().all();
        db.close();
        expect(keys).toEqual(["seed", "k"]); // the new file has the seed and the call made after the switch
      }),
    40_000,
  );

  it(
    "a file moved over it, with the old WAL beside it: the guard waits and says what to do",
    () =>
      inTempDir(async (tmp) => {
        const dir = tmp();
        const ledger = join(dir, "ledger.db");
        const other = join(dir, "other.db");
        await existingLedger(other);
        const { logger, lines } = captureLogs();
        const a = createGuard({ ledger, logger });
        await a.run(request("k", 1), async () => ({ inputTokens: 1000, outputTokens: 100 }));
        await new Promise((r) => setTimeout(r, 50));
        renameSync(other, ledger);
        await new Promise((r) => setTimeout(r, 5500));
        expect(a.ledgerFault?.message).toContain(
          `${ledger}-wal beside it belongs to the replaced file, and SQLite would apply it to the new one`,
        );
        const out = await a.run(request("k", 2), async () => ({ inputTokens: 1, outputTokens: 1 }));
        expect(out.status === "skipped" && out.code).toBe("LEDGER_UNAVAILABLE");
        await a.close();
        expect(lines.some((l) => l.msg === "ledger failure")).toBe(true);
      }),
    20_000,
  );
});
