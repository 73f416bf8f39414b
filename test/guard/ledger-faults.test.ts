// What the guard does when its ledger fails under it (JUDGE_GUARD_ON_ERROR: closed skips the call,
// open judges it) and when the file is not a ledger at all. The store's own behaviour on real
// file faults (read-only, deleted, replaced, overwritten) is in test/store/ledger-files.test.ts.
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { createGuard, isJudgeSkippedError, type OnLedgerError, SqliteStore } from "../../src/index.js";
import { connectionOf } from "../../src/store/sqlite.js";
import { readLedger } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { sessionRequest } from "../helpers/requests.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();

/**
 * Faults applied to a real ledger file after the guard has opened it, that pass. (A read-only
 * file, folder or mount, a deleted or replaced file and overwritten bytes are real faults of
 * the file in ledger-files.test.ts: `PRAGMA query_only` is not what a read-only file does.)
 */
const FAULTS: Array<[string, (store: SqliteStore, path: string) => () => void, RegExp]> = [
  [
    "a database locked by another process beyond the busy timeout",
    (_store, path) => {
      const other = new Database(path);
      other.exec("BEGIN IMMEDIATE");
      return () => {
        other.exec("ROLLBACK");
        other.close();
      };
    },
    /locked|busy/i,
  ],
  [
    "a full disk",
    (store) => {
      // The store's own connection: a page limit holds for the connection that sets it.
      const db = connectionOf(store);
      // No page left to grow into, and no free space left in the pages there are.
      const pages = Number(db.pragma("page_count", { simple: true }));
      db.pragma(`max_page_count = ${pages + 64}`);
      db.exec("CREATE TABLE filler (b BLOB)");
      const fill = db.prepare("INSERT INTO filler VALUES (randomblob(?))");
      // The reservations' own page too, so that an admission finds no room either.
      const reserve = db.prepare(
        "INSERT INTO reservations (ref, owner_id, session_key, judge, model, expected_micros, worst_micros, created_ms) VALUES ('filler', ?, 'filler', 'j', 'm', 0, 0, 0)",
      );
      const untilFull = (insert: () => void) => {
        try {
          for (;;) insert();
        } catch (e) {
          if ((e as { code?: string }).code !== "SQLITE_FULL") throw e;
        }
      };
      for (const size of [4000, 1000, 200, 50, 10, 1]) untilFull(() => fill.run(size));
      untilFull(() => reserve.run("x".repeat(200)));
      untilFull(() => reserve.run("x"));
      return () => {
        db.pragma("max_page_count = 1073741823");
        db.exec("DROP TABLE filler; DELETE FROM reservations WHERE ref = 'filler'");
      };
    },
    /full/i,
  ],
];

describe.each(FAULTS)("%s", (_name, inject, message) => {
  it.each<[OnLedgerError, string, number]>([
    ["closed", "skipped", 0],
    ["open", "judged", 1],
  ])(
    "JUDGE_GUARD_ON_ERROR=%s: the call is %s, with a log line and a counted error, never a throw",
    async (onError, status, calls) => {
      const path = join(tmp(), "ledger.db");
      const store = new SqliteStore(path, { busyTimeoutMs: 20, backgroundCheckpoints: false });
      const { logger, lines } = captureLogs();
      const guard = createGuard({ ledger: store, logger, onError });
      // Enough activity that new pages are needed (the full-disk case).
      for (let i = 0; i < 30; i++) {
        await guard.run(
          {
            judge: "j",
            model: "claude-sonnet-4-6",
            sessionKey: `warm${i}`,
            userMessages: [`q${i}`],
            assistantMessages: [`a${i}`],
          },
          async () => ({ inputTokens: 1, outputTokens: 1 }),
        );
      }
      const restore = inject(store, path);
      let made = 0;
      const outs = [];
      for (let i = 0; i < 20; i++) {
        outs.push(
          await guard.run(
            {
              judge: "j",
              model: "claude-sonnet-4-6",
              sessionKey: `k${i}`,
              userMessages: [`a question ${i} ${"x".repeat(2000)}`],
              assistantMessages: [`an answer ${i} ${"y".repeat(2000)}`],
            },
            async () => {
              made++;
              return { inputTokens: 10, outputTokens: 10 };
            },
          ),
        );
      }
      restore();
      await guard.close(); // retries the settlements the ledger refused
      const judged = outs.filter((o) => o.status === "judged").length;
      const recorded = readLedger(
        path,
        (db) =>
          db
            .prepare(
              "SELECT count(*) AS n FROM decisions WHERE session_key LIKE 'k%' AND decision = 'judged'",
            )
            .get() as { n: number },
      );
      store.close();
      expect(made).toBe(judged);
      if (status === "judged") {
        expect(judged).toBe(20 * calls);
        // A call the ledger could not admit ran unguarded, and its outcome says so: nothing reserved.
        const unreserved = outs.filter((o) => o.status === "judged" && o.reservedUsd === 0).length;
        const unreservedRows = readLedger(
          path,
          (db) =>
            (
              db
                .prepare(
                  "SELECT count(*) AS n FROM decisions WHERE session_key LIKE 'k%' AND decision = 'judged' AND reserved_micros = 0",
                )
                .get() as { n: number }
            ).n,
        );
        expect(unreserved).toBeGreaterThan(0);
        expect(unreserved).toBe(unreservedRows);
      } else {
        // Closed: a call the ledger cannot admit is skipped.
        expect(outs.every((o) => o.status === "skipped" && o.code === "LEDGER_UNAVAILABLE")).toBe(true);
      }
      // Whatever ran is in the ledger once it answers again: no spend lost.
      expect(recorded.n).toBe(judged);
      expect(guard.stats.ledgerErrors).toBeGreaterThan(0);
      const failure = lines.find((l) => l.msg === "ledger failure");
      expect(failure).toBeDefined();
      expect(String(failure!.err)).toMatch(message);
      expect(failure!.ledger).toBe(path);
    },
  );
});

describe("a ledger connection closed under the guard", () => {
  it.each([
    ["closed", "skipped"],
    ["open", "judged"],
  ] as const)(
    "JUDGE_GUARD_ON_ERROR=%s: the call is %s, the failure is logged and counted, the host is not thrown at",
    async (onError, status) => {
      const store = new SqliteStore(join(tmp(), "ledger.db"));
      const { logger, lines } = captureLogs();
      const guard = createGuard({ ledger: store, logger, onError });
      connectionOf(store).close(); // the file is gone from under the guard
      let called = 0;
      const out = await guard.run(sessionRequest("k", ["q"], ["a real answer"]), async () => {
        called++;
        return { inputTokens: 10, outputTokens: 10 };
      });
      expect(out.status).toBe(status);
      expect(called).toBe(status === "judged" ? 1 : 0);
      if (out.status === "skipped") {
        expect(out.code).toBe("LEDGER_UNAVAILABLE");
        expect(isJudgeSkippedError(out.error, "LEDGER_UNAVAILABLE")).toBe(true);
        expect(out.error.message).toMatch(/ledger failed .*failing closed/);
      }
      expect(guard.stats.ledgerErrors).toBeGreaterThanOrEqual(1);
      expect(lines.some((l) => l.msg === "ledger failure")).toBe(true);
      await expect(guard.close()).resolves.toBeUndefined();
    },
  );
});

describe("a corrupt ledger file", () => {
  it("stops start-up with an error naming the file, and the CLI says so in one line", async () => {
    const path = join(tmp(), "ledger.db");
    const garbage = Buffer.alloc(8192, 0x5a);
    writeFileSync(path, garbage);
    expect(() => createGuard({ ledger: path, logger: "silent" })).toThrow(
      `${path} is not a judge-guard ledger (SQLite: file is not a database)`,
    );
    const bin = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
    const smallJsonl = fileURLToPath(new URL("../../examples/small.jsonl", import.meta.url));
    const cli = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(process.execPath, [bin, "replay", smallJsonl, "--db", path], (err, _out, stderr) =>
        resolve({ code: err ? Number(err.code) : 0, stderr }),
      ),
    );
    // An unusable --db is a usage error of replay (exit 2), which names --db alone: it never reads JUDGE_GUARD_DB.
    expect(cli.code).toBe(2);
    expect(cli.stderr.trim().split("\n")).toEqual([
      `judge-guard: --db ${path} is not a judge-guard ledger (not a SQLite file): give --db a new file or an existing ledger`,
    ]);
    expect(readFileSync(path).equals(garbage)).toBe(true);
  });
});
