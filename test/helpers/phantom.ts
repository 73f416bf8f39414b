// Phantom's real source for the integration tests: the snapshots in ../shared/phantom (or
// JUDGE_GUARD_PHANTOM_SNAPSHOTS), copied once per run to a writable folder and installed there
// with Bun from the npm registry. In CI the snapshots must be there (a missing one fails the
// run); in a user's clone without them the tests are skipped with a message saying why.
import { execFileSync, spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const BUN = join(REPO, "node_modules/.bin/bun");
const SNAPSHOTS = resolve(process.env.JUDGE_GUARD_PHANTOM_SNAPSHOTS ?? join(REPO, "../shared/phantom"));
export const PHANTOM_VERSIONS = ["v0.18.2", "main"] as const;
export type SnapshotName = (typeof PHANTOM_VERSIONS)[number];

/** Why the Phantom tests cannot run here, or undefined when they can. Throws in CI: they must. */
export function phantomUnavailable(): string | undefined {
  const missing = PHANTOM_VERSIONS.filter((v) => !existsSync(join(SNAPSHOTS, v, "package.json")));
  if (missing.length === 0) return undefined;
  const why = `Phantom snapshot(s) ${missing.join(", ")} not found under ${SNAPSHOTS}: set JUDGE_GUARD_PHANTOM_SNAPSHOTS to a folder holding v0.18.2/ and main/ (Phantom checkouts)`;
  if (process.env.CI) throw new Error(`${why}. CI must run the Phantom integration tests.`);
  return why;
}

/**
 * A writable, installed copy of one snapshot, made once per snapshot and machine (keyed by the
 * snapshot's lockfile), reused by every test in the run.
 */
export function installedPhantom(name: SnapshotName): string {
  const src = join(SNAPSHOTS, name);
  const stamp = statSync(join(src, "bun.lock")).mtimeMs.toString(36);
  const dest = join(tmpdir(), `judge-guard-phantom-${name}-${stamp}`);
  if (existsSync(join(dest, ".judge-guard-installed"))) return dest;
  // Installed aside and renamed into place, so two test workers racing here both end up with
  // one complete copy (the loser's rename fails and it uses the winner's).
  const staging = mkdtempSync(`${dest}.staging-`);
  try {
    cpSync(src, staging, { recursive: true });
    execFileSync("chmod", ["-R", "u+w", staging]);
    execFileSync(BUN, ["install", "--frozen-lockfile"], { cwd: staging, stdio: "pipe", timeout: 300_000 });
    writeFileSync(join(staging, ".judge-guard-installed"), new Date().toISOString());
    if (existsSync(join(dest, ".judge-guard-installed"))) return dest;
    rmSync(dest, { recursive: true, force: true });
    try {
      renameSync(staging, dest);
    } catch (e) {
      if (!existsSync(join(dest, ".judge-guard-installed"))) throw e;
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return dest;
}

/**
 * A fresh working folder for one Phantom process: its own config, phantom-config and data (which
 * Phantom writes), and the installed source and dependencies linked in.
 */
export function phantomWorkdir(root: string, into: string): string {
  mkdirSync(into, { recursive: true });
  for (const name of ["src", "node_modules", "package.json", "tsconfig.json"]) {
    if (existsSync(join(root, name))) symlinkSync(join(root, name), join(into, name));
  }
  for (const name of ["config", "phantom-config"]) {
    if (existsSync(join(root, name))) cpSync(join(root, name), join(into, name), { recursive: true });
  }
  mkdirSync(join(into, "data"), { recursive: true });
  return into;
}

export interface BunRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The last line of stdout that parses as JSON. */
  result: Record<string, unknown> | undefined;
}

/** Runs a Bun script (or `bun test FILE`) to its end. */
export function runBun(
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<BunRun> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(BUN, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => {
      stdout += c;
    });
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      let result: Record<string, unknown> | undefined;
      for (const line of stdout.trim().split("\n").reverse()) {
        try {
          const v = JSON.parse(line);
          if (v && typeof v === "object") {
            result = v;
            break;
          }
        } catch {
          // not the result line
        }
      }
      resolvePromise({ code, stdout, stderr, result });
    });
  });
}

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, "utf8"));
}

export { SIDECAR_TOKEN, type Sidecar, startSidecar } from "./sidecar.js";
