import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "../../src/client/client.js";
import { ensureBuilt } from "../helpers/cli.js";
import { postgresUnavailable, usePostgres } from "../helpers/postgres.js";
import { SIDECAR_TOKEN } from "../helpers/sidecar.js";
import { hostsUnavailable, killHosts, type SidecarHost, startSidecarHost } from "./hosts.js";
import { type Charge, dbOf, judgedCharges, openReservations, spendBy } from "./ledger.js";

/**
 * The README's fleet: one `judge-guard serve` per host, every sidecar on one PostgreSQL ledger.
 * Three hosts (each its own hostname and PID namespace), each with 64 judge calls in flight
 * through its own sidecar, over shared session keys, a capped judge kind and a global cap that
 * the fleet's demand exceeds many times over. What the database holds afterwards is what counts.
 */
const skip = postgresUnavailable() ?? hostsUnavailable();
const pg = usePostgres();
afterEach(killHosts);

const HOSTS = 3;
const IN_FLIGHT = 64;
const CALLS_PER_HOST = 160;
// Half the calls go to one hot key; a third are of the capped kind `gate`.
const KEYS = ["hot", "k1", "hot", "k2", "hot", "k3", "hot", "k4", "hot", "k5"];
const JUDGES = ["quality", "quality", "gate"];
const SESSION_CAP = 0.15;
// Below what `gate` spends before the global cap runs out however the calls interleave ($0.09 to $0.19
// seen with no cap of its own), so that all three caps refuse calls in every run.
const GATE_CAP = 0.05;
const GLOBAL_CAP = 0.8;
/** A call reports (10,000 + tag) micro-dollars: each charge names its call. Tags stay below 6,000. */
const reported = (tag: number) => 10_000 + tag;
const ONE_CALL = reported(HOSTS * 2000) / 1e6;

describe.skipIf(skip !== undefined)("three hosts, a sidecar each, one PostgreSQL ledger", () => {
  it("hold every cap within one call, and charge exactly what the judges reported", async () => {
    ensureBuilt();
    const cluster = pg();
    const ledger = await cluster.database();
    const env = {
      JUDGE_GUARD_SESSION_BUDGET_USD: String(SESSION_CAP),
      JUDGE_GUARD_DAILY_BUDGET_USD: String(GLOBAL_CAP),
      JUDGE_GUARD_JUDGE_BUDGETS: JSON.stringify({ gate: GATE_CAP }),
      // Worst cases at the call's own model (Sonnet, 2,000 output tokens: $0.03 and its input),
      // so that calls far from a cap run together; every reported cost is below it.
      JUDGE_GUARD_ESCALATION: "none",
      JUDGE_GUARD_VERDICT_TTL: "0",
      JUDGE_GUARD_CONCURRENCY: String(IN_FLIGHT),
      JUDGE_GUARD_ADMISSION_WAIT: "20s",
      JUDGE_GUARD_LOG_LEVEL: "error",
    };
    const sidecars: SidecarHost[] = [];
    for (let h = 0; h < HOSTS; h++) sidecars.push(await startSidecarHost(`host${h}`, ledger, env));

    // Each host's agent: 64 workers on its own sidecar, sharing keys and kinds with the others.
    const seen: Array<{ tag: number; key: string; judge: string; status: string; reason?: string }> = [];
    const ran = new Map<number, number>();
    const agent = async (h: number) => {
      const client = createClient({
        url: sidecars[h]!.url,
        token: SIDECAR_TOKEN,
        onUnreachable: "closed",
        timeoutMs: 20_000,
      });
      let next = 0;
      const worker = async () => {
        while (next < CALLS_PER_HOST) {
          const i = next++;
          const tag = h * 2000 + i;
          const key = KEYS[i % KEYS.length]!;
          const judge = JUDGES[i % JUDGES.length]!;
          const out = await client.run(
            {
              judge,
              model: "claude-sonnet-4-6",
              sessionKey: key,
              userMessages: [`question ${tag}`],
              assistantMessages: [`a real answer to question ${tag}, with substance`],
              maxTokens: 2000,
            },
            async () => {
              ran.set(tag, reported(tag));
              await new Promise((r) => setTimeout(r, 30));
              return { costUsd: reported(tag) / 1e6 };
            },
          );
          seen.push({
            tag,
            key,
            judge,
            status: out.status,
            ...(out.status === "skipped" && { reason: out.reason }),
          });
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      expect(client.stats.pendingSettlements).toBe(0);
      expect(client.stats.unreachable).toBe(0);
    };
    await Promise.all(sidecars.map((_, h) => agent(h)));
    await Promise.all(sidecars.map((s) => s.stop()));

    const db = dbOf(ledger);
    const charges = await judgedCharges(cluster, db);
    const spend = await spendBy(cluster, db);
    const judged = seen.filter((s) => s.status === "judged");
    const reasons = (r: string) => seen.filter((s) => s.reason === r).length;
    console.log(
      `fleet of ${HOSTS} sidecars, ${seen.length} calls: ${judged.length} judged, skipped ${reasons("session_budget")} session_budget, ${reasons("judge_budget")} judge_budget, ${reasons("global_budget")} global_budget; ` +
        `spent $${usd(spend.total)} of $${GLOBAL_CAP} global, $${usd(spend.judge.gate ?? 0)} of $${GATE_CAP} on gate, $${usd(spend.key.hot ?? 0)} of $${SESSION_CAP} on hot (one call is at most $${ONE_CALL})`,
    );

    expect(seen).toHaveLength(HOSTS * CALLS_PER_HOST);
    // The fleet's demand met every cap: each refused calls.
    for (const r of ["session_budget", "judge_budget", "global_budget"])
      expect(reasons(r), r).toBeGreaterThan(0);
    // ...and no cap was passed by more than one call.
    expect(spend.total).toBeLessThanOrEqual(micros(GLOBAL_CAP + ONE_CALL));
    expect(spend.judge.gate).toBeLessThanOrEqual(micros(GATE_CAP + ONE_CALL));
    for (const [key, m] of Object.entries(spend.key))
      expect(m, key).toBeLessThanOrEqual(micros(SESSION_CAP + ONE_CALL));
    // The ledger charged each judged call exactly what its judge reported, once, and nothing else.
    const expected: Charge[] = judged.map((s) => ({ micros: ran.get(s.tag)!, key: s.key, judge: s.judge }));
    expect(sortCharges(charges)).toEqual(sortCharges(expected));
    expect(new Set(charges.map((c) => c.micros)).size).toBe(charges.length);
    expect(ran.size).toBe(judged.length);
    expect(await openReservations(cluster, db)).toBe(0);
  }, 80_000);
});

const micros = (usdAmount: number) => Math.round(usdAmount * 1e6);
const usd = (m: number) => (m / 1e6).toFixed(4);
const sortCharges = (cs: Charge[]) => [...cs].sort((a, b) => a.micros - b.micros);
