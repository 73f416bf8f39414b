// The README's commands, run verbatim: each shell block marked `<!-- run by
// test/docs/readme-commands.test.ts ... -->` is read from the README, so the two cannot drift.
// The walkthrough runs in a fresh copy of the checkout (no dist/, no data/), built as the
// README's first command builds it; `npm ci` is replaced by this checkout's node_modules.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGuard } from "../../src/index.js";
import { createLogger } from "../../src/log/logger.js";
import { type RunningServer, serve } from "../../src/server/server.js";
import { copyCheckout, userEnv } from "../helpers/checkout.js";
import { ROOT } from "../helpers/cli.js";
import { useTempDir } from "../helpers/tmp.js";

const tempDir = useTempDir();
const readme = readFileSync(join(ROOT, "README.md"), "utf8");

/** The commands of the marked sh blocks (comments left out, continuation lines joined), by marker text. */
function markedBlocks(): Array<{ marker: string; commands: string[]; text: string }> {
  const lines = readme.split("\n");
  const out: Array<{ marker: string; commands: string[]; text: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^<!-- run by test\/docs\/readme-commands\.test\.ts(.*) -->$/.exec(lines[i]!.trim());
    if (!m) continue;
    if (lines[i + 1]?.trim() !== "```sh")
      throw new Error(`README line ${i + 2}: a marked block must be \`\`\`sh`);
    const close = lines.findIndex((l, j) => j > i + 1 && l.trim() === "```");
    const body = lines.slice(i + 2, close);
    const commands: string[] = [];
    for (let j = 0; j < body.length; j++) {
      let c = body[j]!.trim();
      if (c === "" || c.startsWith("#")) continue;
      while (c.endsWith("\\")) c = `${c.slice(0, -1).trimEnd()} ${body[++j]!.trim()}`;
      commands.push(c);
    }
    out.push({ marker: m[1]!.trim(), commands, text: body.join("\n") });
  }
  return out;
}

function sh(
  command: string,
  cwd: string,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(
      "/bin/sh",
      ["-c", command],
      { cwd, env, timeout: 120_000, maxBuffer: 1 << 24 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: unknown }).code) || 1 : 0, stdout, stderr }),
    ),
  );
}

describe("the README's walkthrough, verbatim, in a fresh copy", () => {
  const block = markedBlocks().find((b) => b.marker.includes("fresh copy"));
  let copy: string;
  const ran: Array<{ command: string; code: number; stdout: string; stderr: string }> = [];

  beforeAll(async () => {
    copy = join(tempDir(), "judge-guard");
    copyCheckout(copy);
    expect(existsSync(join(copy, "data"))).toBe(false);
    const built = await sh("npm run build", copy, userEnv());
    expect(built.code, built.stderr).toBe(0);
    for (const command of block!.commands) ran.push({ command, ...(await sh(command, copy, userEnv())) });
  }, 240_000);

  it("is marked, and runs replay, report and explain on one ledger", () => {
    expect(block).toBeDefined();
    expect(block!.commands.map((c) => c.split(" ").slice(0, 3).join(" "))).toEqual([
      "node dist/cli/main.js replay",
      "node dist/cli/main.js report",
      "node dist/cli/main.js explain",
      "node dist/cli/main.js report",
    ]);
  });

  it("every command exits 0 and says nothing on stderr", () => {
    for (const r of ran) {
      expect({ command: r.command, code: r.code, stderr: r.stderr }).toEqual({
        command: r.command,
        code: 0,
        stderr: "",
      });
    }
  });

  it("replay creates data/ and keeps its ledger there", () => {
    expect(ran[0]!.stdout).toMatch(
      /^judge-guard replay of examples\/phantom-incident\.jsonl\.gz \(1,076 lines/,
    );
    expect(ran[0]!.stdout).toContain("ledger: data/replay.db");
  });

  it("report, on the incident's day, shows the decisions the replay made", () => {
    expect(ran[1]!.stdout).toMatch(
      /^judge-guard report 2026-11-20T00:00:00\.000Z \.\. 2026-11-21T00:00:00\.000Z/,
    );
    expect(ran[1]!.stdout).toMatch(/judged\s+378 calls/);
    expect(ran[1]!.stdout).toMatch(/skipped\s+698 calls/);
    expect(ran[1]!.stdout).not.toContain("no decisions in this range");
  });

  it("explain names the stuck key's episode, as the README shows", () => {
    expect(ran[2]!.stdout).toContain("cli:cli:local in data/replay.db: 1 stuck episode; stuck now");
  });

  it("the HTML report is written where the command says", () => {
    expect(ran[3]!.stdout).toBe("wrote data/report.html\n");
  });
});

describe("the README's curl to the sidecar, verbatim", () => {
  const block = markedBlocks().find((b) => b.marker.includes("sidecar"));
  let running: RunningServer | undefined;
  afterAll(async () => {
    await running?.close();
  });

  it("is admitted: the answer has the fields the README shows", async () => {
    expect(block).toBeDefined();
    const [command] = block!.commands;
    expect(command).toMatch(/^curl .*http:\/\/127\.0\.0\.1:8787\/v1\/admit/);
    const token = "readme-token-0123456789abcdef";
    const guard = createGuard({ ledger: ":memory:", logger: "silent" });
    running = await serve({ guard, log: createLogger("silent"), port: 0, token });
    const port = new URL(running.url).port;
    // The one change: the sidecar's port, a free one here rather than 8787.
    const r = await sh(
      command!.replace("127.0.0.1:8787", `127.0.0.1:${port}`),
      tempDir(),
      userEnv({ JUDGE_GUARD_TOKEN: token }),
    );
    expect(r.code, r.stderr).toBe(0);
    const answer = JSON.parse(r.stdout) as Record<string, unknown>;
    const shown = JSON.parse(/^# (\{.*\})$/m.exec(block!.text)![1]!) as Record<string, unknown>;
    expect(Object.keys(answer)).toEqual(Object.keys(shown));
    expect(answer.decision).toBe(shown.decision);
  });
});
