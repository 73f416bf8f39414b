// The usage shapes of the major providers, through a real `judge-guard serve` child process and
// through the guard in process (issue 14, item 6: an OpenAI usage was charged at the estimate).
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "../../src/client/client.js";
import { createGuard, type JudgeRequest } from "../../src/index.js";
import { ensureBuilt } from "../helpers/cli.js";
import { captureLogs } from "../helpers/logs.js";
import { SIDECAR_TOKEN, type Sidecar, startSidecar } from "../helpers/sidecar.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const sidecars: Sidecar[] = [];
beforeAll(ensureBuilt, 120_000);
afterEach(async () => {
  for (const s of sidecars.splice(0)) await s.stop();
});

const request = (key: string, model: string): JudgeRequest => ({
  judge: "quality_assessment",
  model,
  sessionKey: key,
  userMessages: ["How did the deploy go?"],
  assistantMessages: ["The deploy is green and the rollback steps are written."],
});

interface Answer {
  readonly decision?: string;
  readonly reservation_id?: string;
  readonly charged_usd?: number;
  readonly error?: { readonly code: string; readonly field?: string };
}

async function post(s: Sidecar, path: string, body: unknown) {
  const res = await fetch(`${s.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${SIDECAR_TOKEN}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Answer };
}

async function sidecar(): Promise<{ s: Sidecar; db: string }> {
  const db = join(tmp(), "ledger.db");
  const s = await startSidecar(db);
  sidecars.push(s);
  return { s, db };
}

const admit = async (s: Sidecar, key: string, model: string) => {
  const r = await post(s, "/v1/admit", {
    judge: "quality_assessment",
    model,
    session_key: key,
    user_messages: ["How did the deploy go?"],
    assistant_messages: ["The deploy is green and the rollback steps are written."],
  });
  expect(r.json.decision).toBe("judge");
  return r.json.reservation_id as string;
};

describe("the sidecar settles the usage of each provider at its tokens' price", () => {
  it.each<[string, string, unknown, number]>([
    [
      "OpenAI Chat Completions",
      "gpt-4.1",
      { prompt_tokens: 100_000, completion_tokens: 1000, prompt_tokens_details: { cached_tokens: 20_000 } },
      (80_000 * 2 + 20_000 * 0.5 + 1000 * 8) / 1e6,
    ],
    [
      "OpenAI Responses",
      "gpt-4o-mini",
      { input_tokens: 100_000, output_tokens: 1000, input_tokens_details: { cached_tokens: 0 } },
      (100_000 * 0.15 + 1000 * 0.6) / 1e6,
    ],
    [
      "Gemini",
      "gemini-2.5-flash",
      { promptTokenCount: 100_000, candidatesTokenCount: 500, thoughtsTokenCount: 500 },
      (100_000 * 0.3 + 1000 * 2.5) / 1e6,
    ],
  ])("%s", async (_name, model, usage, usd) => {
    const { s, db } = await sidecar();
    const id = await admit(s, "k", model);
    const settled = await post(s, "/v1/settle", { reservation_id: id, ok: true, usage });
    expect(settled).toEqual({ status: 200, json: { charged_usd: usd } });
    await s.stop();
    const ledger = new Database(db, { readonly: true });
    const row = ledger.prepare("SELECT cost_source, charged_micros FROM decisions").get();
    ledger.close();
    expect(row).toEqual({ cost_source: "computed", charged_micros: Math.round(usd * 1e6) });
  });

  it("refuses a bad count with the field of the shape that was meant", async () => {
    const { s } = await sidecar();
    const id = await admit(s, "k", "gemini-2.5-pro");
    const r = await post(s, "/v1/settle", {
      reservation_id: id,
      ok: true,
      usage: { promptTokenCount: 10, candidatesTokenCount: -1 },
    });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: "FIELD_INVALID", field: "usage.candidatesTokenCount" });
    // Settled, so that the sidecar stops without waiting for it.
    expect((await post(s, "/v1/settle", { reservation_id: id, ok: false })).status).toBe(200);
  });

  it("the client charges an OpenAI completion by its tokens, not its estimate", async () => {
    const { s } = await sidecar();
    const client = createClient({ url: s.url, token: SIDECAR_TOKEN });
    const out = await client.run(request("k", "gpt-4.1"), async () => ({
      id: "chatcmpl-1",
      object: "chat.completion",
      model: "gpt-4.1-2025-04-14",
      choices: [{ index: 0, message: { role: "assistant", content: '{"score": 4}' } }],
      usage: { prompt_tokens: 100_000, completion_tokens: 100, total_tokens: 100_100 },
    }));
    expect(out).toMatchObject({ status: "judged", costUsd: (100_000 * 2 + 100 * 8) / 1e6 });
  });
});

describe("a usage the guard cannot read", () => {
  it("is charged its estimate, with one warning per judge kind and model", async () => {
    const { logger, lines } = captureLogs();
    const guard = createGuard({ ledger: join(tmp(), "ledger.db"), logger });
    const odd = { usage: { tokensIn: 100_000, tokensOut: 10 } };
    for (const key of ["a", "b"]) {
      const out = await guard.run(request(key, "gpt-4.1"), async () => odd);
      expect(out).toMatchObject({ status: "judged" });
      if (out.status === "judged") expect(out.costUsd).toBe(out.reservedUsd);
    }
    await guard.close();
    const warnings = lines.filter((l) => /shape the guard does not read/.test(String(l.msg)));
    expect(warnings).toEqual([
      expect.objectContaining({ judge: "quality_assessment", model: "gpt-4.1", level: 40 }),
    ]);
  });
});
