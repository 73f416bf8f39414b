// An unknown JUDGE_GUARD_* variable stops start-up: a misspelt cap must not leave the default in
// force without a word. (This file misspells variables on purpose; the scan below skips it.)
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  checkVariableNames,
  createGuard,
  fromEnv,
  KNOWN_VARIABLES,
  OTHER_VARIABLES,
  SERVE_VARIABLES,
} from "../../src/index.js";
import { editDistance, nearest } from "../../src/util/nearest.js";
import { cli, ensureBuilt, ROOT } from "../helpers/cli.js";
import { configErrorOf } from "../helpers/config.js";

beforeAll(ensureBuilt, 120_000);

const STACK_FRAME = /^\s+at /m;

describe("editDistance and nearest", () => {
  it.each([
    ["", "", 0],
    ["SESSION", "SESSION", 0],
    ["SESION", "SESSION", 1],
    ["BUGDET", "BUDGET", 1],
    ["MODE", "MDOE", 1],
    ["abc", "", 3],
    ["kitten", "sitting", 3],
  ])("%j to %j takes %i edits", (a, b, n) => {
    expect(editDistance(a, b)).toBe(n);
    expect(editDistance(b, a)).toBe(n);
  });

  it.each([
    ["SESION_BUDGET_USD", "SESSION_BUDGET_USD"],
    ["DAILY_BUGDET_USD", "DAILY_BUDGET_USD"],
    ["LOGLEVEL", "LOG_LEVEL"],
    ["PHANTOM_DB_PATH", "PHANTOM_DB"],
    ["XYZZY", undefined],
    ["FOO", undefined],
  ])("nearest(%j) is %j", (name, expected) => {
    const candidates = KNOWN_VARIABLES.map((k) => k.slice("JUDGE_GUARD_".length));
    expect(nearest(name, candidates)).toBe(expected);
  });
});

describe("fromEnv: unknown JUDGE_GUARD_* variables", () => {
  it("a misspelt cap stops start-up, naming it and the variable meant", () => {
    const e = configErrorOf({ JUDGE_GUARD_SESION_BUDGET_USD: "1" });
    expect(e.code).toBe("CONFIG_INVALID");
    expect(e.setting).toBe("JUDGE_GUARD_SESION_BUDGET_USD");
    expect(e.message).toMatch(
      /^JUDGE_GUARD_SESION_BUDGET_USD \(did you mean JUDGE_GUARD_SESSION_BUDGET_USD\?\) is not a judge-guard variable/,
    );
    expect(e.message).toContain("JUDGE_GUARD_ALLOW_UNKNOWN=JUDGE_GUARD_SESION_BUDGET_USD");
  });

  it("createGuard(fromEnv()) never starts with the default cap in its place", () => {
    expect(() =>
      createGuard(fromEnv({ JUDGE_GUARD_SESION_BUDGET_USD: "1", JUDGE_GUARD_DB: ":memory:" })),
    ).toThrow(ConfigError);
  });

  it("names every unknown variable at once, with the likely ones for a name spelt like none", () => {
    const e = configErrorOf({
      JUDGE_GUARD_MDOE: "shadow",
      JUDGE_GUARD_BUDGET_USD: "2",
      JUDGE_GUARD_XYZZY: "1",
    });
    // The known names sharing most of its words (BUDGET, USD), at most three.
    expect(e.message).toMatch(
      /JUDGE_GUARD_BUDGET_USD \(did you mean one of JUDGE_GUARD_SESSION_BUDGET_USD, JUDGE_GUARD_DAILY_BUDGET_USD(, JUDGE_GUARD_\w+)?\?\)/,
    );
    expect(e.message).toContain("JUDGE_GUARD_MDOE (did you mean JUDGE_GUARD_MODE?)");
    expect(e.message).toContain("JUDGE_GUARD_XYZZY (no judge-guard variable is spelt like it)");
    expect(e.message).toContain("are not judge-guard variables");
  });

  it("checks the names before the values: a wrong name is the first thing to fix", () => {
    const e = configErrorOf({ JUDGE_GUARD_MODE: "nonsense", JUDGE_GUARD_SESION_BUDGET_USD: "1" });
    expect(e.setting).toBe("JUDGE_GUARD_SESION_BUDGET_USD");
  });

  it("knows every variable this package reads, its tests and CI included", () => {
    const env = Object.fromEntries(KNOWN_VARIABLES.map((n) => [n, ""]));
    expect(() => checkVariableNames(env)).not.toThrow();
    for (const v of [...SERVE_VARIABLES, ...OTHER_VARIABLES])
      expect(() => fromEnv({ [v.name]: "1" })).not.toThrow();
  });

  it("JUDGE_GUARD_ALLOW_UNKNOWN lets the names it lists through, and only those", () => {
    const env = { JUDGE_GUARD_MY_TOOL_FLAG: "1", JUDGE_GUARD_OTHER: "1" };
    expect(() =>
      fromEnv({ ...env, JUDGE_GUARD_ALLOW_UNKNOWN: "JUDGE_GUARD_MY_TOOL_FLAG, JUDGE_GUARD_OTHER" }),
    ).not.toThrow();
    const e = configErrorOf({ ...env, JUDGE_GUARD_ALLOW_UNKNOWN: "JUDGE_GUARD_MY_TOOL_FLAG" });
    expect(e.setting).toBe("JUDGE_GUARD_OTHER");
    expect(e.message).not.toContain("JUDGE_GUARD_MY_TOOL_FLAG (");
  });

  it("JUDGE_GUARD_ALLOW_UNKNOWN=1 lets any name through", () => {
    expect(() => fromEnv({ JUDGE_GUARD_WHATEVER: "x", JUDGE_GUARD_ALLOW_UNKNOWN: "1" })).not.toThrow();
  });

  it("a JUDGE_GUARD_ALLOW_UNKNOWN that is neither 1 nor a list of names is refused", () => {
    const e = configErrorOf({ JUDGE_GUARD_ALLOW_UNKNOWN: "everything" });
    expect(e.setting).toBe("JUDGE_GUARD_ALLOW_UNKNOWN");
    expect(e.message).toMatch(/expected 1, or a comma-separated list of JUDGE_GUARD_\* names/);
  });
});

/** Files of this repository where JUDGE_GUARD_* names may be read or documented. */
function repoFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (["node_modules", "dist", ".git", "fixtures", "test-artifacts", "coverage"].includes(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) repoFiles(path, out);
    else if (/\.(ts|mts|mjs|js|md|json|ya?ml)$|^run$|^Dockerfile$/.test(name)) out.push(path);
  }
  return out;
}

describe("every JUDGE_GUARD_* name in this repository", () => {
  // Names that look like variables and are not: an error code, and the README's misspelling.
  const NOT_VARIABLES = new Set(["JUDGE_GUARD_UNGUARDED", "JUDGE_GUARD_SESION_BUDGET_USD"]);
  const SELF = relative(ROOT, new URL(import.meta.url).pathname);

  it("is a known variable (one read somewhere, so never a misspelling)", () => {
    const found = new Map<string, string>();
    for (const file of repoFiles(ROOT)) {
      const rel = relative(ROOT, file);
      if (rel === SELF || rel === "package-lock.json") continue;
      for (const m of readFileSync(file, "utf8").matchAll(/\bJUDGE_GUARD_[A-Z0-9_]*[A-Z0-9]\b/g))
        if (!found.has(m[0])) found.set(m[0], rel);
    }
    const unknown = [...found].filter(([n]) => !KNOWN_VARIABLES.includes(n) && !NOT_VARIABLES.has(n));
    expect(unknown).toEqual([]);
    expect(found.size).toBeGreaterThan(30);
  });
});

describe("the CLI and the Phantom preload stop on an unknown variable", () => {
  const MISSPELT = { JUDGE_GUARD_SESION_BUDGET_USD: "1" };

  it.each([
    ["replay", ["replay", join(ROOT, "examples", "small.jsonl")]],
    ["report", ["report", "--db", "/nonexistent/x.db"]],
    ["explain", ["explain", "k", "--db", "/nonexistent/x.db"]],
    ["serve", ["serve", "--port", "0"]],
    ["reset-sessions", ["reset-sessions", "--phantom-db", "/nonexistent/p.db", "--all-active"]],
  ])("judge-guard %s: exit 2, one line naming it and the variable meant, no stack", async (_c, args) => {
    const r = await cli(args, { env: MISSPELT, timeoutMs: 15_000 });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).not.toMatch(STACK_FRAME);
    expect(r.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(
        /^judge-guard: JUDGE_GUARD_SESION_BUDGET_USD \(did you mean JUDGE_GUARD_SESSION_BUDGET_USD\?\) is not a judge-guard variable/,
      ),
    ]);
  });

  it("--help and --version still answer (no command runs)", async () => {
    expect((await cli(["--version"], { env: MISSPELT })).code).toBe(0);
    expect((await cli(["replay", "--help"], { env: MISSPELT })).code).toBe(0);
  });

  it("the preload stops Phantom's start under Bun with the same line, exit 2", async () => {
    const bun = join(ROOT, "node_modules", ".bin", "bun");
    const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp" };
    Object.assign(env, { JUDGE_GUARD_URL: "http://127.0.0.1:9" }, MISSPELT);
    const preload = join(ROOT, "dist", "adapters", "phantom-preload.js");
    const r = await new Promise<{ code: number | null; stderr: string; stdout: string }>(
      (resolve, reject) => {
        const child = spawn(bun, [`--preload=${preload}`, "-e", "console.log('Phantom started')"], { env });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => {
          stdout += d;
        });
        child.stderr.on("data", (d) => {
          stderr += d;
        });
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout, stderr }));
      },
    );
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(
      /^judge-guard: JUDGE_GUARD_SESION_BUDGET_USD \(did you mean JUDGE_GUARD_SESSION_BUDGET_USD\?\)/,
    );
  });
});
