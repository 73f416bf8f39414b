import type { PgCluster } from "../helpers/postgres.js";

/**
 * What the fleet tests read from the PostgreSQL ledger, as a user (or `judge-guard report`) would
 * read it: decisions and their charges, spend per scope, reservations and owners.
 */

/** The database name in a ledger URL (the URL itself holds a password: never print it). */
export const dbOf = (url: string): string => new URL(url).pathname.slice(1);

export interface Charge {
  readonly micros: number;
  readonly key: string;
  readonly judge: string;
}

/** Every judged decision's charge (each call reports a distinct cost, so a charge names its call). */
export async function judgedCharges(pg: PgCluster, db: string): Promise<Charge[]> {
  const r = await pg.sql(
    db,
    "SELECT charged_micros AS micros, session_key AS key, judge FROM judge_guard.decisions WHERE decision = 'judged' AND cost_source = 'reported'",
  );
  return r.rows.map((x) => ({ micros: Number(x.micros), key: String(x.key), judge: String(x.judge) }));
}

/** Charged micro-dollars in all, per session key and per judge kind (every decision, estimates included). */
export async function spendBy(
  pg: PgCluster,
  db: string,
): Promise<{ total: number; key: Record<string, number>; judge: Record<string, number> }> {
  const byKey = await pg.sql(
    db,
    "SELECT session_key AS k, sum(charged_micros) AS m FROM judge_guard.decisions GROUP BY 1",
  );
  const byJudge = await pg.sql(
    db,
    "SELECT judge AS k, sum(charged_micros) AS m FROM judge_guard.decisions GROUP BY 1",
  );
  const map = (rows: Array<{ k: string; m: string }>) =>
    Object.fromEntries(rows.map((x) => [x.k, Number(x.m)]));
  const key = map(byKey.rows);
  return { total: Object.values(key).reduce((a, b) => a + b, 0), key, judge: map(byJudge.rows) };
}

/** Reservations neither settled nor charged. */
export async function openReservations(pg: PgCluster, db: string): Promise<number> {
  const r = await pg.sql(
    db,
    "SELECT count(*) AS n FROM judge_guard.reservations WHERE charged_micros IS NULL",
  );
  return Number(r.rows[0].n);
}
