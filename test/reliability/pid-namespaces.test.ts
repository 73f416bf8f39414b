import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/cli.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * Containers of one Kubernetes pod share a hostname but not a PID namespace: a pid in the
 * ledger's owners table means another process (or none) in the reclaimer's namespace. Each
 * guard here runs in a PID namespace of its own (`unshare --pid`, as root; CI runs as root),
 * where both are pid 1, on one ledger file.
 */
const tmp = useTempDir();
const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/processes/${name}`, import.meta.url));
const canUnshare =
  spawnSync("unshare", ["--pid", "--fork", "--mount-proc", "true"], { stdio: "ignore" }).status === 0;
const children: ChildProcess[] = [];

afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});

/** Runs a fixture as pid 1 of a new PID namespace (same hostname: no UTS namespace). */
function inNamespace(script: string, args: string[]): { child: ChildProcess; lines: string[] } {
  const child = spawn(
    "unshare",
    ["--pid", "--fork", "--kill-child", "--mount-proc", process.execPath, fixture(script), ...args],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.push(child);
  const lines: string[] = [];
  let buf = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    const parts = buf.split("\n");
    buf = parts.pop()!;
    lines.push(...parts);
  });
  return { child, lines };
}

async function until<T>(what: string, f: () => T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const last = (lines: string[]) =>
  lines.length === 0 ? undefined : (JSON.parse(lines.at(-1)!) as { reclaimed: number; spentUsd: number });

describe.runIf(canUnshare || process.env.CI)("guards in separate PID namespaces on one ledger", () => {
  it("never reclaim each other's live reservations; a killed one's is charged at its estimate once its heartbeat stops", async () => {
    ensureBuilt();
    const ledger = join(tmp(), "ledger.db");
    const lease = "1500";
    const holder = inNamespace("hold-reservation.mjs", [ledger, "k", lease]);
    await until("the reservation", () => (holder.lines.includes("held") ? true : undefined));

    const watcher = inNamespace("watch-reclaim.mjs", [ledger, "k", lease]);
    // Several leases long: the holder's heartbeat keeps moving, so it is alive, whatever its pid
    // looks like from here (pid 1 is the watcher itself in its namespace).
    await new Promise((r) => setTimeout(r, 4000));
    expect(last(watcher.lines)).toEqual({ reclaimed: 0, spentUsd: 0 });
    const db = new Database(ledger, { readonly: true });
    const open = () =>
      (
        db.prepare("SELECT count(*) AS n FROM reservations WHERE charged_micros IS NULL").get() as {
          n: number;
        }
      ).n;
    expect(open()).toBe(1);

    // Now it dies: its heartbeat stops, and after the lease its call is charged, not freed.
    holder.child.kill("SIGKILL");
    const after = await until("the reclaim", () => {
      const l = last(watcher.lines);
      return l && l.reclaimed > 0 ? l : undefined;
    });
    expect(after.reclaimed).toBe(1);
    expect(after.spentUsd).toBeGreaterThan(0);
    expect(open()).toBe(0);
    const row = db.prepare("SELECT decision, cost_source AS src FROM decisions").get();
    db.close();
    expect(row).toEqual({ decision: "failed", src: "estimate" });
  }, 30_000);
});
