import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import {
  callbackSink,
  createGuard,
  guardAfterSession,
  guardCallJudge,
  phantomSqliteSink,
  SqliteStore,
} from "../../src/index.js";
import {
  FakeSdk,
  makeAfterSession,
  makeJudge,
  PHANTOM_SESSIONS_SCHEMA,
  PhantomLikeRuntime,
  playIncident,
  SESSIONS_SQL,
  type SessionsDb,
} from "../fixtures/phantom-runtime/runtime.js";
import { readLedger } from "../helpers/ledger.js";
import { CANNED } from "../helpers/replies.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const MESSAGES = 40;
const settle = () => new Promise<void>((r) => setTimeout(r, 15));

/** Phantom's data/phantom.db in WAL mode, through better-sqlite3. */
function phantomDb(path: string): { db: SessionsDb; raw: Database.Database } {
  const raw = new Database(path);
  raw.pragma("journal_mode = WAL");
  raw.exec(PHANTOM_SESSIONS_SCHEMA);
  const row = raw.prepare(SESSIONS_SQL.row);
  const insert = raw.prepare(SESSIONS_SQL.insert);
  const set = raw.prepare(SESSIONS_SQL.setSdkSession);
  return {
    raw,
    db: {
      row: (k) => row.get(k) as { sdk_session_id: string | null; status: string } | undefined,
      insert: (k) => void insert.run(k),
      setSdkSession: (k, id) => void set.run(id, k),
    },
  };
}

describe("Phantom issue #25, end to end", () => {
  it("the unguarded runtime stays stuck and every canned turn is judged", async () => {
    const { db, raw } = phantomDb(join(tmp(), "phantom.db"));
    const judge = makeJudge();
    const runtime = new PhantomLikeRuntime(db, new FakeSdk(), makeAfterSession(judge.callJudge));
    const replies = await playIncident(runtime, MESSAGES, settle);
    raw.close();
    expect(replies.every((r) => r === CANNED)).toBe(true);
    expect(judge.stats.calls).toBe(MESSAGES * 2 * 2);
  });

  it("with judge-guard: detected within 3 canned replies, one signal, a fresh session, judging resumes, spend bounded", async () => {
    const dir = tmp();
    const phantomPath = join(dir, "phantom.db");
    const { db, raw } = phantomDb(phantomPath);
    const signals: string[] = [];
    let runtime!: PhantomLikeRuntime;
    const store = new SqliteStore(join(dir, "judge-guard.db"));
    const guard = createGuard({
      ledger: store,
      logger: "silent",
      signals: [
        phantomSqliteSink({ path: phantomPath }),
        // The SQL cannot release Phantom's in-memory lock: the runtime is told directly.
        callbackSink((e) => {
          signals.push(e.type);
          runtime.locks.delete(e.session_key!);
        }),
      ],
    });
    const judge = makeJudge();
    const afterSession = guardAfterSession(guard, makeAfterSession(guardCallJudge(guard, judge.callJudge)), {
      skipped: () => ({ turns: 0 }),
    });
    runtime = new PhantomLikeRuntime(db, new FakeSdk(), afterSession);
    const sdkAfter: Array<string | null> = [];
    const replies = await playIncident(runtime, MESSAGES, async () => {
      await settle();
      sdkAfter.push(db.row("cli:cli:local")!.sdk_session_id);
    });
    await guard.close();

    // Detected at the 2nd canned reply (Phantom's line is known), well within 3.
    const canned = replies.filter((r) => r === CANNED).length;
    expect(canned).toBe(2);
    // The phantom-sqlite signal cleared the stale SDK session right after detection...
    expect(sdkAfter[1]).toBeNull();
    // ...and the next message started a fresh session; the key answers normally since.
    expect(runtime.freshSessions).toContain("cli:cli:local");
    expect(replies.slice(2).every((r) => r !== CANNED)).toBe(true);
    // Exactly one signal for the episode, on each channel.
    expect(signals).toEqual(["stuck_session"]);
    const deliveries = readLedger(store.location, (db) =>
      db.prepare("SELECT channel, status FROM signals ORDER BY id").all(),
    );
    expect(deliveries).toHaveLength(2);
    expect(deliveries).toEqual(
      expect.arrayContaining([
        { channel: "phantom-sqlite", status: "delivered" },
        { channel: "callback", status: "delivered" },
      ]),
    );
    const episodes = store.episodes();
    expect(episodes).toHaveLength(1);
    expect(episodes[0]!.endedMs).not.toBeNull(); // it recovered
    // Judging resumed: every later message was judged (2 judges each, both keys).
    const judgedCli = readLedger(
      store.location,
      (db) =>
        db
          .prepare(
            "SELECT count(*) AS n FROM decisions WHERE session_key = 'cli:cli:local' AND decision = 'judged'",
          )
          .get() as { n: number },
    );
    expect(judgedCli.n).toBe((MESSAGES - 1) * 2);
    store.close();
    raw.close();

    // The same run unguarded, for the ratio.
    const unguarded = makeJudge();
    const plain = phantomDb(join(tmp(), "phantom.db"));
    const stuckRuntime = new PhantomLikeRuntime(
      plain.db,
      new FakeSdk(),
      makeAfterSession(unguarded.callJudge),
    );
    await playIncident(stuckRuntime, MESSAGES, settle);
    plain.raw.close();
    // Unguarded, every canned turn of the stuck key is judged, on an ever longer transcript;
    // guarded, only the first canned reply is, before detection. (The guarded key then
    // recovers, and its healthy turns are judged as they should be.)
    const ratio = judge.stats.cannedUsd / unguarded.stats.cannedUsd;
    expect(unguarded.stats.cannedCalls).toBe(MESSAGES * 2);
    expect(judge.stats.cannedCalls).toBe(2);
    expect(ratio).toBeLessThan(0.05);
    console.log(
      `incident e2e: judge spend on canned replies guarded $${judge.stats.cannedUsd.toFixed(4)} vs unguarded $${unguarded.stats.cannedUsd.toFixed(4)} (ratio ${ratio.toFixed(3)})`,
    );
  });

  it("the Phantom-side code runs under Bun: adapters and runtime on bun:sqlite, the guard in process", async () => {
    const script = fileURLToPath(new URL("../fixtures/phantom-runtime/incident.bun.ts", import.meta.url));
    const bun = fileURLToPath(new URL("../../node_modules/.bin/bun", import.meta.url));
    const out = await new Promise<string>((resolve, reject) =>
      execFile(bun, [script, join(tmp(), "phantom.db")], { timeout: 60_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const result = JSON.parse(out.trim().split("\n").at(-1)!);
    expect(result).toMatchObject({
      runtime: "bun",
      canned: 2,
      signals: 1,
      sdkClearedAfterDetection: true,
      freshSession: true,
      stuckAtEnd: false,
    });
    expect(result.judgeCalls).toBe((40 - 1) * 2 * 2 + 2);
    expect(result.cannedJudgeCalls).toBe(2);
  });
});
