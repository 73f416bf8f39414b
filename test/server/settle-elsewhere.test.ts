import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/cli.js";
import { readLedger } from "../helpers/ledger.js";
import { SIDECAR_TOKEN, type Sidecar, startSidecar } from "../helpers/sidecar.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * Two sidecars on one ledger (two hosts of a fleet, or two processes on one file): a call admitted
 * by one may be settled through the other, and a settlement repeated on the one that admitted it
 * is refused, not charged again. (It used to trust its own ticket and charge the call twice.)
 */
const tmp = useTempDir();
const running: Sidecar[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

const post = async (s: Sidecar, path: string, body: unknown) => {
  const r = await fetch(`${s.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${SIDECAR_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
};

describe("a call settled through another sidecar on the same ledger", () => {
  it.each([
    ["admitted on A, settled on B, then again on A", 0, 1, 0],
    ["admitted on A, settled on A, then again on B", 0, 0, 1],
    ["admitted on B, settled on A, then again on B", 1, 0, 1],
  ])(
    "%s: charged once, the second settlement refused",
    async (_name, admitOn, firstOn, againOn) => {
      ensureBuilt();
      const ledger = join(tmp(), "ledger.db");
      const sidecars = [await startSidecar(ledger), await startSidecar(ledger)];
      running.push(...sidecars);
      const admitted = await post(sidecars[admitOn]!, "/v1/admit", {
        judge: "quality_assessment",
        model: "claude-sonnet-4-6",
        session_key: "fleet:k",
        user_messages: ["a question"],
        assistant_messages: ["a real answer, with substance"],
      });
      expect(admitted.body.decision).toBe("judge");
      const id = admitted.body.reservation_id;
      const settlement = { reservation_id: id, ok: true, cost_usd: 0.0123 };
      const first = await post(sidecars[firstOn]!, "/v1/settle", settlement);
      expect(first).toEqual({ status: 200, body: { charged_usd: 0.0123 } });
      const again = await post(sidecars[againOn]!, "/v1/settle", settlement);
      expect(again.status).toBe(400);
      expect(JSON.stringify(again.body)).toContain("settled already");
      await Promise.all(sidecars.map((s) => s.stop()));
      const rows = readLedger(ledger, (db) => ({
        decisions: db.prepare("SELECT count(*) AS n, sum(charged_micros) AS m FROM decisions").get(),
        usage: db.prepare("SELECT sum(calls) AS calls, sum(micros) AS m FROM usage WHERE scope = '*'").get(),
        open: db.prepare("SELECT count(*) AS n FROM reservations").get(),
      }));
      expect(rows.decisions).toEqual({ n: 1, m: 12_300 });
      expect(rows.usage).toEqual({ calls: 1, m: 12_300 });
      expect(rows.open).toEqual({ n: 0 });
    },
    60_000,
  );
});
