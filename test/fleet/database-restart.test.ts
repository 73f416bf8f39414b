import { afterEach, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/cli.js";
import { postgresUnavailable, usePostgres } from "../helpers/postgres.js";
import {
  done,
  type Host,
  hostsUnavailable,
  killHosts,
  type LoadPlan,
  outcomes,
  type Seen,
  startLoadHost,
  until,
} from "./hosts.js";
import { dbOf, judgedCharges, openReservations, spendBy } from "./ledger.js";

/**
 * The shared PostgreSQL server goes down under load and comes back (the harness's pg_ctl stop,
 * then start: a restart whose gap the test controls). Two hosts: one configured to fail closed
 * (`onError: "closed"`, JUDGE_GUARD_ON_ERROR), whose calls are skipped as `ledger_error` while the
 * database is away, and one to fail open, whose calls are judged unguarded meanwhile (recorded
 * with nothing reserved, once the database answers). Both must
 * go back to guarded calls when it returns, and lose nothing they acknowledged: every call a host
 * saw judged is in the ledger afterwards at what its judge reported (a settlement the database
 * refused is written once it answers), and the capped judge kind is held within one call, plus
 * what the open host spent unguarded.
 */
const skip = postgresUnavailable() ?? hostsUnavailable();
const pg = usePostgres();
afterEach(killHosts);

const GATE_CAP = 0.3;
const ONE_CALL = (10_000 + 5000 + 4000) / 1e6;

const plan = (h: number, onError: "closed" | "open"): LoadPlan => ({
  tagBase: h * 5000,
  calls: 4000,
  inFlight: 64,
  keys: ["a", "b", "c"],
  judges: ["quality", "gate"],
  judgeMs: 1000,
  guard: {
    onError,
    verdictTtlMs: 0,
    concurrency: 64,
    logger: "warn",
    escalation: "none",
    sessionBudgetUsd: 1000,
    dailyBudgetUsd: 1000,
    judgeBudgetsUsd: { gate: GATE_CAP },
  },
});

/** The outcomes `host` printed from line `from` on. */
const since = (host: Host, from: number): Seen[] => outcomes(host).slice(from);
const judged = (o: Seen) => o.status === "judged";
/** How many outcomes of each kind (for failure messages). */
const tally = (seen: Seen[]): string => {
  const n = new Map<string, number>();
  for (const o of seen) n.set(o.reason ?? o.status, (n.get(o.reason ?? o.status) ?? 0) + 1);
  return JSON.stringify(Object.fromEntries(n));
};
/** Charges of host `h` (tags h*5000 on): its reported costs are 10,000 + tag micro-dollars. */
const ofHost = (h: number) => [10_000 + h * 5000, 10_000 + (h + 1) * 5000] as const;

describe.skipIf(skip !== undefined)("the shared database restarted mid-load", () => {
  it("fails closed or open as each host is configured, recovers, and loses no acknowledged decision", async () => {
    ensureBuilt();
    const cluster = pg();
    const ledger = await cluster.database();
    const db = dbOf(ledger);
    const closed = startLoadHost("host-closed", ledger, plan(0, "closed"));
    const open = startLoadHost("host-open", ledger, plan(1, "open"));
    for (const h of [closed, open])
      await until(`${h.name} to judge its first calls`, () =>
        outcomes(h).filter(judged).length >= 64 ? true : undefined,
      );

    const beforeStop = { closed: outcomes(closed).length, open: outcomes(open).length };
    cluster.stop();
    // Closed: skipped as ledger_error. Open: judged all the same; more calls than were in flight
    // at the stop means calls admitted without the ledger.
    await until("the closed host to skip calls as ledger_error", () =>
      since(closed, beforeStop.closed).some((o) => o.reason === "ledger_error") ? true : undefined,
    );
    await until("the open host to judge calls without the ledger", () =>
      since(open, beforeStop.open).filter(judged).length > 64 + 32 ? true : undefined,
    );
    const beforeStart = outcomes(closed).length;
    cluster.start();
    // Back to guarded calls: the closed host judges again (only the ledger lets it), and the open
    // host's ledger rows show a reserved call made after its last unreserved one.
    await until(
      "the closed host to judge again",
      () => (since(closed, beforeStart).some(judged) ? true : undefined),
      45_000,
    ).catch((e: Error) => {
      throw new Error(
        `${e.message}; it saw ${tally(since(closed, beforeStart))}; stderr: ${closed.stderr().slice(-600)}`,
      );
    });
    const [lo, hi] = ofHost(1);
    await until(
      "the open host to reserve calls again",
      async () => {
        const [r] = (
          await cluster.sql(
            db,
            `SELECT max(charged_micros) FILTER (WHERE reserved_micros > 0) AS guarded,
                    max(charged_micros) FILTER (WHERE reserved_micros = 0) AS unguarded
               FROM judge_guard.decisions WHERE decision = 'judged' AND charged_micros >= $1 AND charged_micros < $2`,
            [lo, hi],
          )
        ).rows;
        return r.unguarded !== null && Number(r.guarded) > Number(r.unguarded) ? true : undefined;
      },
      45_000,
    );

    for (const h of [closed, open]) h.child.stdin!.write("stop\n");
    for (const h of [closed, open]) await until(`${h.name} to finish`, () => done(h), 45_000);

    const all = [...outcomes(closed), ...outcomes(open)];
    const closedSaw = outcomes(closed);
    const openSaw = outcomes(open);
    expect(all.some((o) => o.status === "error")).toBe(false);

    // Nothing acknowledged was lost: every judged call, reserved or not, at its reported cost.
    const charges = await judgedCharges(cluster, db);
    const acknowledged = all.filter(judged);
    expect(charges.map((c) => c.micros).sort((a, b) => a - b)).toEqual(
      acknowledged.map((o) => o.reportedMicros!).sort((a, b) => a - b),
    );
    expect(await openReservations(cluster, db)).toBe(0);

    // Each failed as configured, and only so: the closed host skipped and never judged without
    // a reservation; the open host never skipped for the ledger, and judged unreserved calls.
    const unreserved = async (h: number) => {
      const [from, to] = ofHost(h);
      const r = await cluster.sql(
        db,
        `SELECT judge, charged_micros AS m FROM judge_guard.decisions
          WHERE decision = 'judged' AND reserved_micros = 0 AND charged_micros >= $1 AND charged_micros < $2`,
        [from, to],
      );
      return r.rows.map((x: { judge: string; m: string }) => ({ judge: x.judge, micros: Number(x.m) }));
    };
    expect(closedSaw.filter((o) => o.reason === "ledger_error").length).toBeGreaterThan(0);
    expect(await unreserved(0)).toEqual([]);
    expect(openSaw.some((o) => o.reason === "ledger_error")).toBe(false);
    const openUnreserved = await unreserved(1);
    expect(openUnreserved.length).toBeGreaterThan(0);

    // The capped kind: within one call of its cap, beyond what the open host ran unguarded.
    const spend = await spendBy(cluster, db);
    const unguardedGate = openUnreserved.filter((c) => c.judge === "gate").reduce((a, c) => a + c.micros, 0);
    expect(all.some((o) => o.reason === "judge_budget")).toBe(true);
    expect(spend.judge.gate).toBeLessThanOrEqual(Math.round((GATE_CAP + ONE_CALL) * 1e6) + unguardedGate);
    console.log(
      `database down and back: the closed host skipped ${closedSaw.filter((o) => o.reason === "ledger_error").length} calls as ledger_error, ` +
        `the open host judged ${openUnreserved.length} without a reservation ($${(unguardedGate / 1e6).toFixed(4)} of them on gate); ` +
        `all ${acknowledged.length} judged calls in the ledger at their reported cost; gate spent $${((spend.judge.gate ?? 0) / 1e6).toFixed(4)} of $${GATE_CAP}`,
    );
  }, 90_000);
});
