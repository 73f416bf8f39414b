import { describe, expect, it } from "vitest";
import { cli, ensureBuilt } from "../helpers/cli.js";
import { PG_PASSWORD, postgresUnavailable, usePostgres } from "../helpers/postgres.js";
import { SIDECAR_TOKEN, startSidecar } from "../helpers/sidecar.js";

/**
 * `replay`, `report`, `explain` and `serve` on a PostgreSQL ledger (`--db postgres://...` or
 * JUDGE_GUARD_DB), and the one line each says when the database cannot be used: never the password.
 */
const RANGE = ["--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z"];
const noPostgres = postgresUnavailable();

describe.skipIf(noPostgres !== undefined)("the CLI on a PostgreSQL ledger", () => {
  const cluster = usePostgres();
  const noSecret = (r: { stdout: string; stderr: string }) => {
    expect(r.stdout).not.toContain(PG_PASSWORD);
    expect(r.stderr).not.toContain(PG_PASSWORD);
    expect(r.stderr).not.toContain(encodeURIComponent(PG_PASSWORD));
  };

  it("replays the incident into a database, reports and explains it from there, and refuses a second replay", async () => {
    ensureBuilt();
    const url = await cluster().database();
    const replayed = await cli([
      "replay",
      "examples/phantom-incident.jsonl.gz",
      "--db",
      url,
      "--json",
      "--no-progress",
    ]);
    noSecret(replayed);
    expect(replayed.code).toBe(0);
    const summary = JSON.parse(replayed.stdout) as { spent_usd: number; saved_usd: number; ledger: string };
    expect(summary.ledger).toMatch(/^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/jg_/);

    const report = await cli(["report", "--db", url, ...RANGE, "--format", "json"]);
    noSecret(report);
    expect(report.code).toBe(0);
    const totals = (
      JSON.parse(report.stdout) as { totals: { spent_usd?: number; charged_usd?: number; saved_usd: number } }
    ).totals;
    expect(totals.saved_usd).toBeCloseTo(summary.saved_usd, 2);

    // The table, through JUDGE_GUARD_DB this time.
    const table = await cli(["report", ...RANGE], { env: { JUDGE_GUARD_DB: url } });
    expect(table.code).toBe(0);
    expect(table.stdout).toContain("cli:cli:local");
    noSecret(table);

    const explained = await cli(["explain", "cli:cli:local", "--db", url]);
    expect(explained.code).toBe(0);
    expect(explained.stdout).toMatch(/cli:cli:local in postgres:\/\/postgres:\*\*\*@.*1 stuck episode/);
    noSecret(explained);

    const again = await cli(["replay", "examples/phantom-incident.jsonl.gz", "--db", url, "--no-progress"]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/--db postgres:\/\/postgres:\*\*\*@.* already holds 1,076 decisions/);
    noSecret(again);
  }, 120_000);

  it("a wrong password, an unreachable server, a missing database: one line naming JUDGE_GUARD_DB, no stack, exit 1", async () => {
    ensureBuilt();
    const url = await cluster().database();
    const bad = {
      password: url.replace(encodeURIComponent(PG_PASSWORD), "wrong-password-123"),
      server: url.replace(`:${cluster().port}/`, ":1/"),
      database: url.replace(/\/jg_[^/]+$/, "/no_such_db"),
    };
    for (const [what, db] of Object.entries(bad)) {
      const r = await cli(["report", ...RANGE], { env: { JUDGE_GUARD_DB: db } });
      expect(r.code, what).toBe(1);
      const lines = r.stderr.trim().split("\n");
      expect(lines, what).toHaveLength(1);
      expect(lines[0], what).toMatch(
        /^judge-guard: report: cannot read the PostgreSQL ledger postgres:\/\/postgres:\*\*\*@/,
      );
      expect(lines[0], what).toMatch(/JUDGE_GUARD_DB \(--db\)/);
      expect(r.stderr).not.toContain("wrong-password-123");
      expect(r.stderr).not.toMatch(/\n\s+at /);
      noSecret(r);
    }
  });

  it("a user who may not create the ledger's schema: one line saying which privilege it needs, no stack", async () => {
    ensureBuilt();
    const url = await cluster().database();
    const dbName = new URL(url).pathname.slice(1);
    await cluster().sql("postgres", "DROP ROLE IF EXISTS jg_nocreate");
    await cluster().sql("postgres", "CREATE ROLE jg_nocreate LOGIN PASSWORD 'nocreate-pw-42'");
    await cluster().sql("postgres", `REVOKE CREATE ON DATABASE ${dbName} FROM PUBLIC`);
    const db = cluster()
      .url(dbName)
      .replace(/\/\/postgres:[^@]+@/, "//jg_nocreate:nocreate-pw-42@");
    const r = await cli(["replay", "examples/phantom-incident.jsonl.gz", "--db", db, "--no-progress"]);
    expect(r.code).not.toBe(0);
    // The guard's log line of the fault, and the command's own line: each says what to grant.
    const last = r.stderr.trim().split("\n").at(-1)!;
    expect(last).toMatch(/^judge-guard: --db postgres:\/\/jg_nocreate:\*\*\*@.*permission denied/);
    expect(last).toContain("needs CREATE on the database");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).not.toContain("--verbose");
    expect(r.stderr).not.toContain("nocreate-pw-42");
  }, 60_000);

  it("a URL that is no URL: one line saying how to write it, without the password; serve refuses to start", async () => {
    ensureBuilt();
    const db = `postgres://postgres:${PG_PASSWORD}@127.0.0.1:99999/db`;
    const report = await cli(["report", ...RANGE], { env: { JUDGE_GUARD_DB: db } });
    expect(report.code).toBe(1);
    expect(report.stderr.trim()).toBe(
      "judge-guard: report: JUDGE_GUARD_DB (--db) postgres://postgres:***@127.0.0.1:99999/db is not a valid PostgreSQL URL: write it as postgres://user:password@host:port/database, with special characters of the password percent-encoded",
    );
    const serve = await cli(["serve", "--port", "0"], { env: { JUDGE_GUARD_DB: db }, timeoutMs: 20_000 });
    expect(serve.code).toBe(2);
    expect(serve.stderr).toMatch(
      /^judge-guard: JUDGE_GUARD_DB \(--db\) postgres:\/\/postgres:\*\*\*@.* is not a valid PostgreSQL URL/,
    );
    noSecret(report);
    noSecret(serve);
  });

  it("serve guards on the database: /healthz says ok, a call is admitted and settled into it", async () => {
    ensureBuilt();
    const url = await cluster().database();
    const sidecar = await startSidecar(url);
    try {
      const health = await (await fetch(`${sidecar.url}/healthz`)).json();
      expect(health).toMatchObject({ ok: true, ledger: "ok" });
      const headers = { authorization: `Bearer ${SIDECAR_TOKEN}`, "content-type": "application/json" };
      const admit = (await (
        await fetch(`${sidecar.url}/v1/admit`, {
          method: "POST",
          headers,
          body: JSON.stringify({
            judge: "quality",
            model: "claude-haiku-4-5",
            session_key: "served",
            user_messages: ["q"],
            assistant_messages: ["a real answer"],
            max_tokens: 50,
          }),
        })
      ).json()) as { decision: string; reservation_id: string };
      expect(admit.decision).toBe("judge");
      const settle = await fetch(`${sidecar.url}/v1/settle`, {
        method: "POST",
        headers,
        body: JSON.stringify({ reservation_id: admit.reservation_id, ok: true, cost_usd: 0.25 }),
      });
      expect(settle.status).toBe(200);
    } finally {
      await sidecar.stop();
    }
    expect(sidecar.stderr()).not.toContain(PG_PASSWORD);
    const db = new URL(url).pathname.slice(1);
    const charged = await cluster().sql(
      db,
      "SELECT sum(charged_micros)::int AS m FROM judge_guard.decisions",
    );
    expect(charged.rows[0].m).toBe(250_000);
  });
});
