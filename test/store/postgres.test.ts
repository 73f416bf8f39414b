import { execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { createGuard, isJudgeGuardError, LedgerSchemaError } from "../../src/index.js";
import { PostgresStore } from "../../src/store/postgres.js";
import { PG_SCHEMA_VERSION } from "../../src/store/postgres-migrations.js";
import { ensureBuilt } from "../helpers/cli.js";
import { PG_PASSWORD, postgresUnavailable, usePostgres } from "../helpers/postgres.js";
import { LIBFAKETIME, processFixture } from "../helpers/processes.js";

/**
 * What the PostgreSQL ledger adds to the contract every store passes (contract.test.ts): several
 * hosts migrating at once, a newer schema refused, a server that goes away and comes back, no
 * password in any message, a dead host's calls reclaimed by its lease, and the database's clock
 * deciding which window a charge falls in whatever the host's clock says.
 */
const run = promisify(execFile);
const request = (key: string, i: number) => ({
  judge: "quality_assessment",
  model: "claude-sonnet-4-6",
  sessionKey: key,
  userMessages: [`question ${i}`],
  assistantMessages: [`a real answer to question ${i}`],
  maxTokens: 100,
});
const until = async (what: () => boolean, ms = 15_000) => {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 50));
  }
};

const noPostgres = postgresUnavailable();
describe.skipIf(noPostgres !== undefined)("PostgreSQL ledger", () => {
  const cluster = usePostgres();

  it("4 hosts opening a new database at once migrate it once, and all of them use it", async () => {
    ensureBuilt();
    const url = await cluster().database();
    // Each host opens the store (migrating it if it must) and charges 5 x 1,000 in sections.
    const outs = await Promise.all(
      [1, 2, 3, 4].map(() =>
        run(process.execPath, [processFixture("contract-section.mjs"), url, "5", "1000000"], {
          encoding: "utf8",
          timeout: 60_000,
        }),
      ),
    );
    expect(outs.map((o) => o.stdout.trim())).toEqual(["5", "5", "5", "5"]);
    const db = new URL(url).pathname.slice(1);
    const version = await cluster().sql(db, "SELECT version FROM judge_guard.schema_version");
    expect(version.rows).toEqual([{ version: PG_SCHEMA_VERSION }]);
    const store = new PostgresStore(url);
    expect(store.scopeUsage(null, 0).spentMicros).toBe(20_000);
    store.close();
  });

  it("a CommonJS `node -e` script (where synckit's worker cannot start) gets a ConfigError saying what to do, not a two-minute hang", async () => {
    ensureBuilt();
    const url = await cluster().database();
    const index = fileURLToPath(new URL("../../dist/index.js", import.meta.url));
    const script = `import(${JSON.stringify(index)}).then((m) => {
      try { m.createGuard({ ledger: process.argv[1], logger: "silent" }); console.log("started"); }
      catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }
      process.exit(0);
    })`;
    // Well under the answer timeout (two minutes) that a hang would run into.
    const { stdout } = await run(process.execPath, ["-e", script, url], {
      encoding: "utf8",
      timeout: 60_000,
    });
    const out = JSON.parse(stdout) as { name: string; code: string; message: string };
    expect(out).toMatchObject({ name: "ConfigError", code: "CONFIG_INVALID" });
    expect(out.message).toMatch(/node --input-type=module -e/);
    expect(out.message).not.toContain(PG_PASSWORD);
  });

  it("a ledger written by a newer judge-guard is refused, naming both versions and what to do", async () => {
    const url = await cluster().database();
    new PostgresStore(url).close();
    await cluster().sql(new URL(url).pathname.slice(1), "UPDATE judge_guard.schema_version SET version = 99");
    let err: unknown;
    try {
      new PostgresStore(url, { whenUnavailable: "retry" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LedgerSchemaError);
    expect((err as Error).message).toMatch(
      /schema version 99, newer than this judge-guard understands \(1\)/,
    );
    expect((err as Error).message).toMatch(/upgrade judge-guard/);
    expect((err as Error).message).not.toContain(PG_PASSWORD);
  });

  it("a wrong password or an unreachable server: one clear fault naming JUDGE_GUARD_DB, never the password", async () => {
    const url = await cluster().database();
    const wrong = url.replace(encodeURIComponent(PG_PASSWORD), "not-the-password-42");
    const faults = [wrong, url.replace(`:${cluster().port}/`, ":1/")].map((u) => {
      const store = new PostgresStore(u, { whenUnavailable: "retry", connectTimeoutMs: 2000 });
      const f = store.fault;
      store.close();
      return f;
    });
    expect(faults[0]?.message).toMatch(
      /refused the connection .*password.*check the user and password in JUDGE_GUARD_DB/,
    );
    expect(faults[1]?.message).toMatch(/cannot be reached .*JUDGE_GUARD_DB/);
    for (const f of faults) {
      expect(isJudgeGuardError(f) && f.code).toBe("LEDGER_FAULT");
      expect(f!.message).not.toContain("not-the-password-42");
      expect(f!.message).not.toContain(PG_PASSWORD);
      expect(f!.message).toContain("postgres://postgres:***@127.0.0.1");
    }
  });

  it("a database restart: calls fail closed while it is down (no transaction left open), and the guard recovers", async () => {
    const url = await cluster().database();
    const guard = createGuard({ ledger: url, logger: "silent", leaseMs: 1000, verdictTtlMs: 0 });
    expect((await guard.run(request("k", 0), async () => ({ costUsd: 0.1 }))).status).toBe("judged");
    cluster().stop();
    try {
      const down = await guard.run(request("k", 1), async () => ({ costUsd: 0.1 }));
      expect(down).toMatchObject({ status: "skipped", code: "LEDGER_UNAVAILABLE" });
      await until(() => guard.ledgerFault !== null);
      expect(guard.ledgerFault?.message).not.toContain(PG_PASSWORD);
    } finally {
      cluster().start();
    }
    await until(() => guard.ledgerFault === null);
    expect((await guard.run(request("k", 2), async () => ({ costUsd: 0.1 }))).status).toBe("judged");
    expect(guard.session("k").spentUsd).toBeCloseTo(0.2, 6);
    await guard.close();
    const open = await cluster().sql(
      "postgres",
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
    );
    expect(open.rows[0].n).toBe(0);
  });

  it("with onError open, calls run unguarded while the database is down", async () => {
    const url = await cluster().database();
    const guard = createGuard({ ledger: url, logger: "silent", onError: "open", verdictTtlMs: 0 });
    cluster().stop();
    try {
      expect((await guard.run(request("k", 1), async () => ({ costUsd: 0.1 }))).status).toBe("judged");
    } finally {
      cluster().start();
    }
    await guard.close();
  });

  it("a host that dies mid-call: its reservation is reclaimed by its lease on the database's clock, never freed", async () => {
    ensureBuilt();
    const url = await cluster().database();
    const child = spawn(process.execPath, [processFixture("hold-reservation.mjs"), url, "held-key", "1000"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout!.on("data", (d) => {
      out += String(d);
    });
    await until(() => out.includes("held"), 30_000);
    const watcher = new PostgresStore(url);
    expect(watcher.scopeUsage("held-key", 0).openCount).toBe(1);
    child.kill("SIGKILL");
    const guard = createGuard({ ledger: url, logger: "silent", leaseMs: 1000 });
    // First the lease expires: the call keeps counting (it may still settle); after ten leases it
    // is charged at its estimate.
    await until(() => watcher.reservation(watcher.deadReservations([])[0]?.id ?? "")?.orphanedMs != null);
    expect(watcher.scopeUsage("held-key", 0).openCount).toBe(1);
    await until(() => watcher.scopeUsage("held-key", 0).openCount === 0, 20_000);
    expect(watcher.scopeUsage("held-key", 0)).toMatchObject({ calls: 1 });
    expect(watcher.scopeUsage("held-key", 0).spentMicros).toBeGreaterThan(0);
    await guard.close();
    watcher.close();
  }, 40_000);

  it.runIf(LIBFAKETIME !== undefined || process.env.CI)(
    "a host whose system clock is 5 hours behind charges the window every other host counts",
    async () => {
      ensureBuilt();
      expect(LIBFAKETIME, "libfaketime (Debian package faketime) is needed").toBeDefined();
      const url = await cluster().database();
      const { stdout } = await run(
        process.execPath,
        [processFixture("charge-once.mjs"), url, "k", "0.1", "3600000"],
        {
          encoding: "utf8",
          env: { ...process.env, LD_PRELOAD: LIBFAKETIME!, FAKETIME: "-5h", DONT_FAKE_MONOTONIC: "1" },
          timeout: 60_000,
        },
      );
      const r = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
        systemMs: number;
        status: string;
        spentUsd: number;
      };
      // The fault was real: that host's clock is 5 hours behind this one.
      expect(Date.now() - r.systemMs).toBeGreaterThan(4.9 * 3_600_000);
      expect(r).toMatchObject({ status: "judged", spentUsd: 0.1 });
      // An honest host with a one-hour window counts it: the charge is dated by the database.
      const honest = createGuard({ ledger: url, logger: "silent", budgetWindowMs: 3_600_000 });
      expect(honest.session("k").spentUsd).toBeCloseTo(0.1, 6);
      await honest.close();
      const db = new URL(url).pathname.slice(1);
      const ts = await cluster().sql(db, "SELECT ts FROM judge_guard.decisions");
      expect(Math.abs(Number(ts.rows[0].ts) - Date.now())).toBeLessThan(60_000);
    },
  );

  it("a host whose clock is 5 hours ahead and that starts while the database is down takes the database's time once it answers: the fleet's spend still counts against it", async () => {
    ensureBuilt();
    expect(LIBFAKETIME, "libfaketime (Debian package faketime) is needed").toBeDefined();
    const url = await cluster().database();
    const honest = createGuard({
      ledger: url,
      logger: "silent",
      budgetWindowMs: 3_600_000,
      sessionBudgetUsd: 0.3,
    });
    expect((await honest.run(request("k", 1), async () => ({ costUsd: 0.3 }))).status).toBe("judged");
    await honest.close();
    cluster().stop();
    let out = "";
    const child = spawn(
      process.execPath,
      [processFixture("charge-once.mjs"), url, "k", "0.1", "3600000", "0.3"],
      {
        env: { ...process.env, LD_PRELOAD: LIBFAKETIME!, FAKETIME: "+5h", DONT_FAKE_MONOTONIC: "1" },
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    const exited = new Promise<number | null>((done) => child.on("exit", done));
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    try {
      await until(() => out.startsWith("started"), 30_000);
    } finally {
      cluster().start();
    }
    expect(await exited).toBe(0);
    const r = JSON.parse(out.trim().split("\n").at(-1)!) as {
      systemMs: number;
      status: string;
      reason: string;
      spentUsd: number;
    };
    expect(r.systemMs - Date.now()).toBeGreaterThan(4.9 * 3_600_000); // the fault was real
    // The $0.30 spent within the hour counts on that host too: the key is at its cap.
    expect({ status: r.status, reason: r.reason, spentUsd: r.spentUsd }).toEqual({
      status: "skipped",
      reason: "session_budget",
      spentUsd: 0.3,
    });
  }, 90_000);

  it("a live host's calls in flight, its owner row gone (another host took its lease for expired), are never charged at their estimate while it runs", async () => {
    ensureBuilt();
    const url = await cluster().database();
    const db = new URL(url).pathname.slice(1);
    const q = async (text: string) => (await cluster().sql(db, text)).rows;
    const watcher = createGuard({ ledger: url, logger: "silent", leaseMs: 1000 });
    let out = "";
    const holder = spawn(
      process.execPath,
      [processFixture("hold-calls.mjs"), url, "60000", "4", "6000", "held"],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    const exited = new Promise<number | null>((done) => holder.on("exit", done));
    holder.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    try {
      // Its 4 calls are in flight; then it stalls, and its owner row goes, as when another host
      // found its lease expired.
      const open = async () => Number((await q("SELECT count(*) AS n FROM judge_guard.reservations"))[0].n);
      for (const end = Date.now() + 30_000; (await open()) < 4 && Date.now() < end; )
        await new Promise((r) => setTimeout(r, 50));
      expect(await open()).toBe(4);
      holder.kill("SIGSTOP");
      await q("DELETE FROM judge_guard.owners WHERE id IN (SELECT owner_id FROM judge_guard.reservations)");
      // The watcher beats every third of its lease: several reclaims while the holder is stopped.
      const set = async () =>
        Number(
          (await q("SELECT count(*) AS n FROM judge_guard.reservations WHERE orphaned_ms IS NOT NULL"))[0].n,
        );
      for (const end = Date.now() + 15_000; (await set()) < 4 && Date.now() < end; )
        await new Promise((r) => setTimeout(r, 100));
      // Set aside, still counting at their worst case; nothing charged: no owner row proves no death.
      expect(await set()).toBe(4);
      expect(await q("SELECT count(*)::int AS n FROM judge_guard.decisions")).toEqual([{ n: 0 }]);
    } finally {
      holder.kill("SIGCONT");
    }
    expect(await exited).toBe(0);
    expect(JSON.parse(out)).toEqual(["judged", "judged", "judged", "judged"]);
    await watcher.close();
    // Each call charged once, what its judge reported.
    const rows = await q(
      "SELECT decision, charged_micros::int AS m FROM judge_guard.decisions ORDER BY charged_micros",
    );
    expect(rows).toEqual([10_000, 20_000, 30_000, 40_000].map((m) => ({ decision: "judged", m })));
  }, 90_000);

  it.each(["closed", "open"] as const)(
    "an admission whose COMMIT reached the database but whose answer was lost (onError %s): its reservation is withdrawn once the database answers, never charged",
    async (onError) => {
      const url = await cluster().database();
      const db = new URL(url).pathname.slice(1);
      const cutter = await commitCutter(cluster().port);
      const via = url.replace(`:${cluster().port}/`, `:${cutter.port}/`);
      const guard = createGuard({ ledger: via, logger: "silent", onError, verdictTtlMs: 0 });
      try {
        const first = await guard.run(request("k", 0), async () => ({ costUsd: 0.01 }));
        expect(first.status === "skipped" ? `${first.code}: ${first.error.message}` : first.status).toBe(
          "judged",
        );
        cutter.arm();
        await new Promise((r) => setTimeout(r, 200)); // the line reaches the proxy
        const cut = await guard.run(request("k", 1), async () => ({ costUsd: 0.02 }));
        await until(() => cutter.cuts === 1, 5_000);
        expect(cut.status).toBe(onError === "closed" ? "skipped" : "judged");
        // The row was committed: the database holds a reservation for a call that was skipped, or
        // that ran unreserved and is charged by its own decision.
        const reservations = async () =>
          Number((await cluster().sql(db, "SELECT count(*) AS n FROM judge_guard.reservations")).rows[0].n);
        expect(await reservations()).toBe(1);
        // The next admission, once the database answers, withdraws it first.
        for (const end = Date.now() + 20_000; guard.ledgerFault !== null && Date.now() < end; )
          await new Promise((r) => setTimeout(r, 100));
        const after = await guard.run(request("k", 2), async () => ({ costUsd: 0.03 }));
        expect(after.status).toBe("judged");
        expect(await reservations()).toBe(0);
      } finally {
        await guard.close();
        cutter.close();
      }
      const charged = await cluster().sql(
        db,
        "SELECT charged_micros::int AS m, cost_source AS source FROM judge_guard.decisions WHERE decision <> 'skipped' ORDER BY id",
      );
      const expected = onError === "closed" ? [10_000, 30_000] : [10_000, 20_000, 30_000];
      expect(charged.rows).toEqual(expected.map((m) => ({ m, source: "reported" })));
    },
    60_000,
  );
});

/** The commit cutter (fixtures/processes/commit-cutter.mjs), in a process of its own. */
async function commitCutter(target: number) {
  const child = spawn(process.execPath, [processFixture("commit-cutter.mjs"), String(target)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  await until(() => /port \d+/.test(out), 10_000);
  return {
    port: Number(/port (\d+)/.exec(out)![1]),
    arm: () => child.stdin!.write("arm\n"),
    get cuts() {
      return out.split("\n").filter((l) => l === "cut").length;
    },
    close: () => child.kill(),
  };
}
