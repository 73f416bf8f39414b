import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { ROOT } from "./cli.js";

/**
 * Copies this checkout's files (tracked, and new ones not ignored: what a fresh clone of this
 * work would hold, so no dist/ and no data/) to `to`, with a symlink to this checkout's
 * node_modules in place of `npm ci`.
 */
export function copyCheckout(to: string): void {
  const listed = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: ROOT,
    encoding: "utf8",
  });
  for (const file of listed.split("\0").filter(Boolean)) {
    if (!existsSync(join(ROOT, file))) continue; // deleted in the working tree
    // A git worktree may link another checkout's node_modules: a file git lists, not a folder
    // it ignores. It is linked below like a real one.
    if (file === "node_modules") continue;
    mkdirSync(dirname(join(to, file)), { recursive: true });
    cpSync(join(ROOT, file), join(to, file));
  }
  symlinkSync(join(ROOT, "node_modules"), join(to, "node_modules"));
}

/** The environment of a child run as a user would: no JUDGE_GUARD_* and no npm_* of the runner. */
export function userEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith("JUDGE_GUARD_") && !k.startsWith("npm_")) env[k] = v;
  return { ...env, ...extra };
}
