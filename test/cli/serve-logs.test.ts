// `judge-guard serve` logs for its reader: JSON lines for a collector (stderr not a terminal),
// text lines for people at a terminal, either one with --log-format.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { serveLogFormat } from "../../src/cli/serve.js";
import { BIN, ensureBuilt } from "../helpers/cli.js";

beforeAll(ensureBuilt, 120_000);
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

const MYSTERY = JSON.stringify({
  judge: "quality_assessment",
  model: "claude-mystery-9",
  session_key: "k",
  user_messages: ["hi"],
  assistant_messages: ["Hello! How can I help you today?"],
});

describe("serveLogFormat", () => {
  it.each<[string | undefined, boolean, "text" | "json"]>([
    [undefined, true, "text"],
    [undefined, false, "json"],
    ["json", true, "json"],
    ["text", false, "text"],
    [" JSON ", true, "json"],
  ])("--log-format %j with a terminal %s: %s", (flag, tty, expected) => {
    expect(serveLogFormat(flag, tty)).toBe(expected);
  });

  it("refuses another format, naming the option", () => {
    expect(() => serveLogFormat("pretty", false)).toThrow('--log-format "pretty" is not one of text, json');
  });
});

/**
 * Starts serve (through `wrap`, e.g. `script` for a terminal), asks it to admit a call on a model
 * with no price (the guard warns), and returns everything it printed once the warning is there.
 */
async function warningOf(command: string, args: string[]): Promise<string> {
  const child = spawn(command, args, {
    env: { PATH: process.env.PATH ?? "", JUDGE_GUARD_DB: ":memory:", TERM: "dumb" },
  });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d;
  });
  child.stderr!.on("data", (d: Buffer) => {
    out += d;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const look = setInterval(() => {
      const m = /serving on (http:\/\/[0-9.:]+)/.exec(out);
      if (m) {
        clearInterval(look);
        resolve(m[1]!);
      }
    }, 20);
    child.on("exit", (c) => {
      clearInterval(look);
      reject(new Error(`serve exited ${c}: ${out}`));
    });
  });
  const res = await fetch(`${url}/v1/admit`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: MYSTERY,
  });
  expect(res.status).toBe(200);
  for (let i = 0; i < 200 && !/no price for this model/.test(out); i++)
    await new Promise((r) => setTimeout(r, 10));
  return out.replaceAll("\r", "");
}

describe("judge-guard serve logs", () => {
  it("stderr not a terminal: the guard's records are pino JSON lines", async () => {
    const out = await warningOf(process.execPath, [BIN, "serve", "--port", "0"]);
    const line = out.split("\n").find((l) => l.includes("no price for this model"));
    const record = JSON.parse(line!) as Record<string, unknown>;
    expect(record).toMatchObject({ level: 40, name: "judge-guard", model: "claude-mystery-9" });
    expect(record.msg).toBe("no price for this model: charging it at the highest known rate");
  });

  it("--log-format text: one line for people, as the other commands print", async () => {
    const out = await warningOf(process.execPath, [BIN, "serve", "--port", "0", "--log-format", "text"]);
    expect(out).toContain(
      "judge-guard: warning: no price for this model: charging it at the highest known rate (model=claude-mystery-9)",
    );
    expect(out).not.toMatch(/^\{/m);
  });

  it.skipIf(!existsSync("/usr/bin/script"))(
    "stderr a terminal (under script(1)): text lines by default",
    async () => {
      const command = `${process.execPath} ${BIN} serve --port 0`;
      const out = await warningOf("/usr/bin/script", ["-qfec", command, "/dev/null"]);
      expect(out).toContain("judge-guard: warning: no price for this model");
      expect(out).not.toMatch(/"level":40/);
    },
  );
});
