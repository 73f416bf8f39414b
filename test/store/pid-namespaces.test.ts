import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { ensureBuilt } from "../helpers/cli.js";
import { processFixture } from "../helpers/processes.js";
import { useTempDir } from "../helpers/tmp.js";

/**
 * Containers of one Kubernetes pod share a hostname but not a PID namespace: a pid in the
 * ledger's owners table means another process (or none) in the reclaimer's namespace. Each
 * guard here runs in a PID namespace of its own (`unshare --pid`, as root; CI runs as root),
 * where both are pid 1, on one ledger file.
 */
const tmp = useTempDir();
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
    ["--pid", "--fork", "--kill-child", "--mount-proc", process.execPath, processFixture(script), ...args],
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

/** The pid (in this namespace) of the process `unshare --fork` started. */
function innerPid(child: ChildProcess): number {
  const pid = child.pid!;
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(" ");
  return Number(children[0]);
}

const last = (lines: string[]) =>
  lines.length === 0 ? undefined : (JSON.parse(lines.at(-1)!) as { reclaimed: number; spentUsd: number });

describe.runIf(canUnshare || process.env.CI)("guards in separate PID namespaces on one ledger", () => {
  it("never free each other's reservations: a live one is left alone, a stalled one is held at its worst case, a killed one is charged at its estimate", async () => {
    ensureBuilt();
    const ledger = join(tmp(), "ledger.db");
    const lease = "1000";
    const holder = inNamespace("hold-reservation.mjs", [ledger, "k", lease]);
    await until("the reservation", () => (holder.lines.includes("held") ? true : undefined));

    const watcher = inNamespace("watch-reclaim.mjs", [ledger, "k", lease]);
    // Several leases long: the holder's heartbeat keeps moving, so it is alive, whatever its pid
    // looks like from here (pid 1 is the watcher itself in its namespace).
    await new Promise((r) => setTimeout(r, 3000));
    expect(last(watcher.lines)).toEqual({ reclaimed: 0, spentUsd: 0 });
    const db = new Database(ledger, { readonly: true });
    const row = () =>
      db
        .prepare("SELECT orphaned_ms IS NOT NULL AS orphaned, charged_micros AS charged FROM reservations")
        .get();

    // Stalled (SIGSTOP) past the lease: it may yet settle, so its call keeps counting at its worst
    // case. Nothing is charged and nothing is freed.
    const node = innerPid(holder.child);
    process.kill(node, "SIGSTOP");
    const waiting = await until("the silent owner's reservation set aside", () => {
      const l = last(watcher.lines);
      return l && l.reclaimed > 0 ? l : undefined;
    });
    expect(waiting).toEqual({ reclaimed: 1, spentUsd: 0 });
    expect(row()).toEqual({ orphaned: 1, charged: null });

    // Killed: after its time to live (ten leases) the call is charged at its estimate, not freed.
    process.kill(node, "SIGKILL");
    const after = await until(
      "the charge",
      () => {
        const l = last(watcher.lines);
        return l && l.spentUsd > 0 ? l : undefined;
      },
      20_000,
    );
    expect(after.reclaimed).toBe(1);
    expect(row()).toMatchObject({ orphaned: 1 });
    expect((row() as { charged: number }).charged).toBeGreaterThan(0);
    const decision = db.prepare("SELECT decision, cost_source AS src FROM decisions").get();
    db.close();
    expect(decision).toEqual({ decision: "failed", src: "estimate" });
  }, 45_000);
});
