import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { SessionState } from "../../src/guard/guard.js";
import type { JudgeRequest } from "../../src/guard/request.js";
import {
  assessmentFromWire,
  assessmentToWire,
  fieldsOnTheWire,
  judgesFromWire,
  judgesToWire,
  requestFromWire,
  requestToWire,
  sessionStateFromWire,
  sessionStateToWire,
  settlementFromWire,
  settlementToWire,
} from "../../src/wire/map.js";
import { admitBody, assessBody, settleBody } from "../../src/wire/schema.js";
import { ensureBuilt, ROOT } from "../helpers/cli.js";

/** What the client sends, as the sidecar parses it: JSON, then the schema. */
const overTheWire = <T>(schema: { parse(v: unknown): T }, body: unknown): T =>
  schema.parse(JSON.parse(JSON.stringify(body)));

describe("a request over the wire", () => {
  const transcript = { userMessages: ["deploy it"], assistantMessages: ["Deploying build 142 now."] };

  it.each<[string, JudgeRequest]>([
    [
      "with a key and the messages",
      { judge: "quality_assessment", model: "claude-sonnet-4-6", sessionKey: "k", ...transcript },
    ],
    [
      "with every field",
      {
        judge: "regression_gate",
        model: "claude-haiku-4-5",
        sessionKey: "k",
        ...transcript,
        reply: {
          costUsd: 0.02,
          sdkSessionId: "sdk_1",
          durationMs: 900,
          handled: true,
          toolsUsed: ["Bash"],
          outcome: "success",
        },
        maxTokens: 2048,
        escalation: ["claude-sonnet-4-6", "claude-opus-4-1"],
        variant: "golden-1",
      },
    ],
  ])("arrives as it was sent, %s", (_name, request) => {
    const arrived = requestFromWire(overTheWire(admitBody, requestToWire(request)));
    expect(JSON.parse(JSON.stringify(arrived))).toEqual(request);
  });

  const summary = {
    session_key: "k",
    user_messages: ["q"],
    assistant_messages: ["a"],
    cost_usd: 0.01,
    session_id: "s",
    tools_used: ["Read"],
    outcome: "success",
  };
  it.each([
    ["snake_case", summary],
    [
      "camelCase",
      {
        sessionKey: "k",
        userMessages: ["q"],
        assistantMessages: ["a"],
        costUsd: 0.01,
        sessionId: "s",
        toolsUsed: ["Read"],
        outcome: "success",
      },
    ],
  ])("carries a Phantom session given in %s as its SessionSummary", (_casing, session) => {
    const sent = requestToWire({ judge: "j", model: "m", session });
    expect(overTheWire(admitBody, sent).session).toEqual(summary);
  });

  it("carries an assessment's judges", () => {
    const judges = [
      { judge: "observation_extraction", model: "claude-sonnet-4-6" },
      { judge: "consolidation", model: "claude-haiku-4-5", variant: "v", maxTokens: 512 },
    ];
    const body = overTheWire(assessBody, {
      ...requestToWire({ sessionKey: "k", ...transcript }),
      judges: judgesToWire({ judges }),
    });
    expect(JSON.parse(JSON.stringify(judgesFromWire(body)))).toEqual({ judges });
  });

  it("names the guard's fields as the wire spells them, and only those", () => {
    expect(fieldsOnTheWire("userMessages")).toBe("user_messages");
    expect(
      fieldsOnTheWire(
        "sessionKey, maxTokens and assistantMessages; option maxTranscriptTokens, escalation[0]",
      ),
    ).toBe("session_key, max_tokens and assistant_messages; option maxTranscriptTokens, escalation[0]");
  });
});

describe("answers over the wire", () => {
  it("a settlement keeps its usage, cache writes split by lifetime", () => {
    const usage = {
      inputTokens: 10,
      outputTokens: 20,
      cacheReadTokens: 30,
      cacheWriteTokens: 40,
      cacheWrite1hTokens: 50,
    };
    const sent = settlementToWire("r1", true, { usage, costUsd: 0.5, model: "claude-opus-4-1" });
    expect(settlementFromWire(overTheWire(settleBody, sent))).toEqual({
      ok: true,
      usage,
      costUsd: 0.5,
      model: "claude-opus-4-1",
    });
  });

  it("a key's state keeps a cap of none, which JSON cannot write as Infinity", () => {
    const state: SessionState = {
      sessionKey: "k",
      stuck: true,
      episodeId: "e1",
      fingerprint: "f",
      repeats: 3,
      spentUsd: 0.25,
      calls: 4,
      budgetUsd: Number.POSITIVE_INFINITY,
      maxCalls: Number.POSITIVE_INFINITY,
    };
    expect(sessionStateFromWire(JSON.parse(JSON.stringify(sessionStateToWire(state))))).toEqual(state);
  });

  it("an assessment arrives as it was made", () => {
    const v = { stuck: true, skip: true, episodeId: "e1", fingerprint: "f", repeats: 3 };
    expect(assessmentFromWire(JSON.parse(JSON.stringify(assessmentToWire(v))))).toEqual(v);
  });
});

/** The modules a built file loads when it runs (type imports are gone from dist/). */
function runtimeImports(entry: string): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const [, spec] of readFileSync(file, "utf8").matchAll(/(?:from|import)\s*\(?\s*"([^"]+)"/g)) {
      if (spec!.startsWith(".")) visit(resolve(dirname(file), spec!));
      else packages.add(spec!);
    }
  };
  visit(join(ROOT, "dist", entry));
  return packages;
}

describe("the modules Phantom loads under Bun", () => {
  beforeAll(() => ensureBuilt());

  it.each(["client/client.js", "adapters/index.js"])(
    "%s loads no zod: the mappers and limits it shares take only its types",
    (entry) => {
      const packages = runtimeImports(entry);
      expect(packages.size).toBeGreaterThan(0);
      expect([...packages]).not.toContain("zod");
    },
  );
});
