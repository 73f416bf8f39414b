import { execFile, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { createGuard } from "../../src/index.js";
import { ensureBuilt } from "../helpers/cli.js";
import { LIBFAKETIME, processFixture } from "../helpers/processes.js";
import { FakeClock, useTempDir } from "../helpers/tmp.js";

/**
 * What a wrong clock can do to money. A guard's windows are measured on its clock; spend is in
 * the ledger, shared. Neither a peer's clock running days ahead nor this process's own system
 * clock jumping may erase spend or open a window early.
 */
const tmp = useTempDir();
const request = (key: string, i: number) => ({
  judge: "quality_assessment",
  model: "claude-sonnet-4-6",
  sessionKey: key,
  userMessages: [`question ${i}`],
  assistantMessages: [`a real answer to question ${i}`],
  maxTokens: 2000,
});

describe("clock faults", () => {
  it("a guard whose clock runs 3 days ahead prunes no spend that other guards' windows still count", async () => {
    const ledger = join(tmp(), "ledger.db");
    const clock = new FakeClock(Date.now());
    const honest = createGuard({ ledger, logger: "silent", clock, leaseMs: 1500, verdictTtlMs: 0 });
    for (let i = 0; i < 5; i++) await honest.run(request("k", i), async () => ({ costUsd: 0.1 }));
    expect(honest.session("k").spentUsd).toBeCloseTo(0.5, 6);
    // A peer on the same ledger whose clock is 3 days ahead, heartbeating (and pruning) every 500 ms.
    const ahead = createGuard({
      ledger,
      logger: "silent",
      clock: { now: () => clock.now() + 3 * 86_400_000 },
      leaseMs: 1500,
    });
    await new Promise((r) => setTimeout(r, 2000));
    await ahead.close();
    expect(honest.session("k").spentUsd).toBeCloseTo(0.5, 6);
    await honest.close();
    const later = createGuard({ ledger, logger: "silent", clock });
    expect(later.session("k").spentUsd).toBeCloseTo(0.5, 6);
    await later.close();
  });

  it("the first guard to prune a ledger, 3 days ahead, erases nothing: the horizon starts at the oldest bucket", async () => {
    const ledger = join(tmp(), "ledger.db");
    const clock = new FakeClock(Date.now());
    const honest = createGuard({ ledger, logger: "silent", clock, verdictTtlMs: 0 });
    for (let i = 0; i < 3; i++) await honest.run(request("k", i), async () => ({ costUsd: 0.1 }));
    // Closed before its first heartbeat: no horizon has ever been stored.
    await honest.close();
    const ahead = createGuard({
      ledger,
      logger: "silent",
      clock: { now: () => clock.now() + 3 * 86_400_000 },
      leaseMs: 1500,
    });
    await new Promise((r) => setTimeout(r, 1500));
    await ahead.close();
    const later = createGuard({ ledger, logger: "silent", clock });
    expect(later.session("k").spentUsd).toBeCloseTo(0.3, 6);
    await later.close();
  });

  it("prunes spend older than twice the longest window once that much time has really passed", async () => {
    const ledger = join(tmp(), "ledger.db");
    const clock = new FakeClock(Date.now());
    const guard = createGuard({ ledger, logger: "silent", clock, leaseMs: 1500, verdictTtlMs: 0 });
    await guard.run(request("k", 1), async () => ({ costUsd: 0.1 }));
    await guard.close();
    // Three days on, by a clock that (for this test) really moved: the day-old charge is gone
    // from the windows, and its bucket is pruned as the prune horizon catches up.
    const { default: Database } = await import("better-sqlite3");
    const db = new Database(ledger);
    // The charge is 3 days old, and the ledger's horizon (which only moves as time passes) has
    // reached 2.5 days ago.
    db.prepare("UPDATE usage SET bucket = bucket - 3 * 86400000").run();
    db.prepare("INSERT OR REPLACE INTO ledger_clock (name, ms) VALUES ('prune_horizon', ?)").run(
      clock.now() - 2.5 * 86_400_000,
    );
    db.close();
    const next = createGuard({ ledger, logger: "silent", clock, leaseMs: 1500 });
    await new Promise((r) => setTimeout(r, 1500));
    await next.close();
    const check = new Database(ledger, { readonly: true });
    expect(check.prepare("SELECT count(*) AS n FROM usage").get()).toEqual({ n: 0 });
    check.close();
  });

  it.runIf(LIBFAKETIME !== undefined || process.env.CI)(
    "the system clock jumping +25 hours and back opens no new window: spend stays within the cap plus one call",
    async () => {
      ensureBuilt();
      expect(LIBFAKETIME, "libfaketime (Debian package faketime) is needed").toBeDefined();
      const dir = tmp();
      const offset = join(dir, "faketime.rc");
      writeFileSync(offset, "+0\n");
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [processFixture("clock-jump.mjs"), join(dir, "l.db")],
        {
          env: {
            ...process.env,
            LD_PRELOAD: LIBFAKETIME!,
            FAKETIME_TIMESTAMP_FILE: offset,
            FAKETIME_NO_CACHE: "1",
            DONT_FAKE_MONOTONIC: "1",
          },
        },
      );
      const r = JSON.parse(stdout) as { spent: number; judged: number; jumpedMs: number };
      // The fault was real: the process's wall clock moved by 25 hours.
      expect(r.jumpedMs).toBeGreaterThan(24 * 3_600_000);
      expect(r.spent).toBeLessThanOrEqual(0.3 + 0.05 + 1e-9);
    },
  );
});

// Debian's faketime may be missing on a developer's machine: say so rather than skip silently.
if (LIBFAKETIME === undefined && !process.env.CI && spawnSync("true").status === 0)
  console.warn(
    "clock-faults: libfaketime not found (apt-get install faketime): the system-clock test is skipped",
  );
