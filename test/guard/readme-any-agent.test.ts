// The README's "Use with any agent" example, compiled as a user would paste it (tsc, strict) and
// run as a Node process on a real SQLite ledger, with the reader's parts (the tracing store, the
// judge call, where scores go) filled in: an evaluator loop over the snapshots a scheduled
// evaluator would see of a healthy session and of one stuck on a canned reply (issue 14, item 6).
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, ROOT } from "../helpers/cli.js";
import { useTempDir } from "../helpers/tmp.js";

const tmp = useTempDir();
const MARKER = "<!-- run by test/guard/readme-any-agent.test.ts -->";
beforeAll(() => ensureBuilt());

/** The README's block after the marker. */
function readmeExample(): string {
  const lines = readFileSync(join(ROOT, "README.md"), "utf8").split("\n");
  const at = lines.findIndex((l) => l.trim() === MARKER);
  if (at === -1 || lines[at + 1]?.trim() !== "```ts")
    throw new Error(`README.md: no \`\`\`ts block after ${MARKER}`);
  const close = lines.findIndex((l, i) => i > at + 1 && l.trim() === "```");
  return lines.slice(at + 2, close).join("\n");
}

/** The reader's parts: traces from a file, a judge answering in its provider's shape, scores on stdout. */
const READERS_PARTS = `
function recentTraces(): Promise<Trace[]> {
  return Promise.resolve(JSON.parse(readFileSync(process.env.TRACES!, "utf8")) as Trace[]);
}

async function askJudge(model: string, prompt: string, trace: Trace) {
  const promptTokens = 400 + Math.ceil(JSON.stringify(trace).length / 4) + prompt.length;
  return model.startsWith("gemini")
    ? { modelVersion: model, candidates: [], usageMetadata: { promptTokenCount: promptTokens, candidatesTokenCount: 30, thoughtsTokenCount: 70 } }
    : { object: "chat.completion", model, choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: 100 } };
}

async function saveScore(sessionId: string, evaluator: string, _value: unknown, costUsd: number): Promise<void> {
  process.stdout.write(\`\${JSON.stringify({ sessionId, evaluator, costUsd })}\\n\`);
}
`;

const CANNED = "Sorry, I hit an internal error and could not finish that. Please try again in a moment.";

/** What a scheduled evaluator sees: each session as it was at each run, oldest first. */
function snapshots() {
  const stuck = [
    {
      user: "Why did last night's deploy fail?",
      assistant: "The migration timed out on the orders table; I split it in two and it passes now.",
    },
    ...["Can you rerun it?", "Is it done?", "Hello?", "Any news?", "Please answer."].map((user) => ({
      user,
      assistant: CANNED,
      costUsd: 0.002,
    })),
  ];
  const healthy = [
    {
      user: "Summarise the incident.",
      assistant: "Checkout failed for 12 minutes after a config push; rolled back at 09:41.",
    },
    { user: "Who was paged?", assistant: "The payments on-call, Dana, acknowledged within two minutes." },
  ];
  return [
    ...stuck.map((_, i) => ({ sessionId: "ops:7", turns: stuck.slice(0, i + 1) })),
    ...healthy.map((_, i) => ({ sessionId: "support:42", turns: healthy.slice(0, i + 1) })),
  ];
}

describe("README: Use with any agent", () => {
  it("compiles strict, runs, skips the stuck session and charges each judge its provider's usage", async () => {
    const dir = tmp();
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(ROOT, join(dir, "node_modules", "judge-guard"), "dir");
    symlinkSync(join(ROOT, "node_modules", "@types"), join(dir, "node_modules", "@types"), "dir");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          types: ["node"],
          strict: true,
          noUncheckedIndexedAccess: true,
          exactOptionalPropertyTypes: true,
          skipLibCheck: true,
          outDir: "out",
        },
        files: ["loop.ts"],
      }),
    );
    writeFileSync(
      join(dir, "loop.ts"),
      `import { readFileSync } from "node:fs";\n${readmeExample()}\n${READERS_PARTS}`,
    );
    const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) =>
        execFile(
          process.execPath,
          args,
          { cwd: dir, timeout: 120_000, env: { ...process.env, ...env } },
          (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
        ),
      );
    const compiled = await run([
      join(ROOT, "node_modules/typescript/bin/tsc"),
      "-p",
      join(dir, "tsconfig.json"),
    ]);
    expect(compiled, "the README's example compiles").toEqual({ code: 0, out: "", err: "" });

    const traces = join(dir, "traces.json");
    writeFileSync(traces, JSON.stringify(snapshots()));
    const ledger = join(dir, "ledger.db");
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("JUDGE_GUARD_")),
    );
    const r = await new Promise<{ code: number; out: string; err: string }>((resolve) =>
      execFile(
        process.execPath,
        [join(dir, "out", "loop.js")],
        { cwd: dir, timeout: 60_000, env: { ...clean, TRACES: traces, JUDGE_GUARD_DB: ledger } },
        (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      ),
    );
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    const skipped = lines.filter((l) => !l.startsWith("{"));
    const scored = lines
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { sessionId: string; evaluator: string; costUsd: number });
    // The stuck session: judged while its canned reply could still be an answer, then skipped by
    // both evaluators; the healthy one judged every time.
    expect(skipped).toEqual([
      "helpfulness on ops:7: STUCK_SESSION",
      "faithfulness on ops:7: STUCK_SESSION",
      "helpfulness on ops:7: STUCK_SESSION",
      "faithfulness on ops:7: STUCK_SESSION",
      "helpfulness on ops:7: STUCK_SESSION",
      "faithfulness on ops:7: STUCK_SESSION",
    ]);
    expect(scored.filter((s) => s.sessionId === "support:42")).toHaveLength(4);
    expect(scored.filter((s) => s.sessionId === "ops:7")).toHaveLength(6);

    // Charged by each provider's usage at its own prices (no estimate).
    const db = new Database(ledger, { readonly: true });
    const rows = db
      .prepare(
        "SELECT judge, model, cost_source, charged_micros, input_tokens, output_tokens FROM decisions WHERE decision = 'judged'",
      )
      .all() as Array<{
      judge: string;
      model: string;
      cost_source: string;
      charged_micros: number;
      input_tokens: number;
      output_tokens: number;
    }>;
    db.close();
    expect(rows).toHaveLength(10);
    for (const row of rows) {
      expect(row.cost_source).toBe("computed");
      const [input, output] = row.model === "gpt-4.1-mini" ? [0.4, 1.6] : [0.3, 2.5];
      expect(row.output_tokens).toBe(100);
      expect(row.charged_micros).toBe(Math.round(row.input_tokens * input + row.output_tokens * output));
    }
  }, 180_000);
});
