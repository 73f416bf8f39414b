import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const BIN = join(ROOT, "dist", "cli", "main.js");

export interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Variables added to the child's environment (after JUDGE_GUARD_* are removed). */
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Written to the child's standard input. */
  readonly stdin?: string | Buffer;
  /** Kills the child after this long (a hang then fails the test instead of outliving it). */
  readonly timeoutMs?: number;
  /** A command the binary runs under (e.g. setpriv, to run it as another user). */
  readonly wrap?: readonly string[];
}

/** Builds dist/ when the binary is missing (`npm test` builds first; `vitest run` alone may not). */
export function ensureBuilt(): void {
  if (existsSync(BIN)) return;
  const r = spawnSync("npx", ["tsc", "-p", "tsconfig.build.json"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`build failed:\n${r.stdout}${r.stderr}`);
}

/** Starts the real CLI binary in a child process (for one that keeps running, like `serve`). */
export function spawnCli(args: readonly string[], opts: Omit<RunOptions, "stdin"> = {}): ChildProcess {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("JUDGE_GUARD_")) env[k] = v;
  }
  Object.assign(env, { NO_COLOR: "1" }, opts.env);
  const command = [...(opts.wrap ?? []), process.execPath, BIN, ...args];
  return spawn(command[0]!, command.slice(1), {
    cwd: opts.cwd ?? ROOT,
    env,
    ...(opts.timeoutMs === undefined ? {} : { timeout: opts.timeoutMs, killSignal: "SIGKILL" }),
  });
}

/** Runs the real CLI binary in a child process. */
export function cli(args: readonly string[], opts: RunOptions = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, opts);
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin!.on("error", () => {}); // the CLI may exit before reading all of it
    child.stdin!.end(opts.stdin ?? "");
  });
}
