// judge-guard installed as a dependency, as a user installs it: the package is packed (its
// `prepare` script builds dist/ in a copy of this checkout), the tarball is installed into a
// scratch project, which imports it from ESM, runs `npx judge-guard`, and type-checks a strict
// TypeScript file against its types.
//
// Dependencies come from npm's cache when it has them (--prefer-offline). Install scripts are
// not run: better-sqlite3's would compile the addon again (minutes on CI's two cores), so the
// addon this checkout compiled is copied in instead. Everything else is as installed.
import { execFile } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyCheckout, userEnv } from "../helpers/checkout.js";
import { ROOT } from "../helpers/cli.js";

// One folder for the whole file: the tests share the packed tarball and the scratch project.
let base: string;
let made = 0;
const tempDir = (): string => {
  const d = join(base, String(made++));
  mkdirSync(d);
  return d;
};
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], cwd: string, timeout = 240_000): Promise<Ran> {
  const env = userEnv();
  return new Promise((resolve) =>
    execFile(command, args, { cwd, env, timeout, maxBuffer: 1 << 24 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) || 1 : 0, stdout, stderr }),
    ),
  );
}

const CONSUMER_MJS = `
import { createGuard, isStuckSessionError } from "judge-guard";
import { createClient } from "judge-guard/client";
import { installPhantomGuard } from "judge-guard/phantom";
import pkg from "judge-guard/package.json" with { type: "json" };

const guard = createGuard({ ledger: "data/ledger.db", logger: "silent" });
const outcome = await guard.run(
  { judge: "quality", model: "claude-haiku-4-5", sessionKey: "k", userMessages: ["hi"], assistantMessages: ["Hello! How can I help?"] },
  () => ({ usage: { input_tokens: 100, output_tokens: 20 } }),
);
await guard.close();
// A second guard on the file finds the call the first one charged.
const again = createGuard({ ledger: "data/ledger.db", logger: "silent" });
const calls = again.session("k").calls;
await again.close();
console.log(JSON.stringify({
  status: outcome.status,
  calls,
  version: pkg.version,
  client: typeof createClient,
  phantom: typeof installPhantomGuard,
  guards: typeof isStuckSessionError,
}));
`;

// Strict, and the library's own .d.ts files checked too (skipLibCheck off): a type they name
// that does not resolve (better-sqlite3's) is an error, not a silent any.
const CONSUMER_TS = `
import { createGuard, type Outcome, type SkipCode, SqliteStore } from "judge-guard";
import { createClient, type GuardClient } from "judge-guard/client";
import { guardAnthropicClient } from "judge-guard/phantom";

const guard = createGuard({ ledger: ":memory:", mode: "shadow" });
const outcome: Outcome<{ score: number }> = await guard.run(
  { judge: "quality", model: "claude-haiku-4-5", sessionKey: "k", userMessages: ["hi"], assistantMessages: ["Hello!"] },
  async () => ({ score: 1 }),
);
if (outcome.status === "skipped") {
  const code: SkipCode = outcome.code;
  console.log(code, outcome.savedUsd.toFixed(2));
}
// Were the types any, these would not be errors, and the directives themselves would be.
// @ts-expect-error: mode is "enforce" or "shadow"
createGuard({ mode: "nonsense" });
const store = new SqliteStore(":memory:");
const n: number = store.scopeUsage(null, 0).spentMicros;
// @ts-expect-error: the store's connection is its own
store.db.close();
store.close();
const client: GuardClient = createClient({ url: "http://127.0.0.1:8787" });
console.log(n, typeof guardAnthropicClient, client.stats.unreachable);
await guard.close();
`;

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    lib: ["ES2023", "DOM"],
    types: ["node"],
    strict: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    skipLibCheck: false,
    noEmit: true,
  },
  files: ["consumer.ts"],
};

describe("judge-guard installed from its packed tarball", () => {
  let tarball: string;
  let project: string;

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), "judge-guard-package-"));
    const checkout = join(tempDir(), "judge-guard");
    copyCheckout(checkout);
    // No dist/ in the copy: `npm pack` must build it (the prepare script), as a git install does.
    expect(existsSync(join(checkout, "dist"))).toBe(false);
    const out = tempDir();
    const packed = await run("npm", ["pack", "--json", "--pack-destination", out], checkout);
    expect(packed.code, packed.stderr).toBe(0);
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("["))) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    tarball = join(out, info!.filename);
    const files = info!.files.map((f) => f.path);
    expect(files).toEqual(
      expect.arrayContaining(["package.json", "README.md", "dist/index.js", "dist/index.d.ts"]),
    );
    expect(files).toContain(pkg.bin["judge-guard"]);
    expect(files.filter((f) => f.startsWith("src/") || f.startsWith("test/"))).toEqual([]);

    project = tempDir();
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "scratch", private: true, type: "module" }),
    );
    const installed = await run(
      "npm",
      // A TypeScript consumer brings its own Node types, as this checkout does.
      [
        "install",
        tarball,
        `@types/node@${pkg.devDependencies["@types/node"]}`,
        "--prefer-offline",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
      ],
      project,
    );
    expect(installed.code, installed.stderr).toBe(0);
    const addon = join("node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node");
    mkdirSync(dirname(join(project, addon)), { recursive: true });
    copyFileSync(join(ROOT, addon), join(project, addon));
  }, 300_000);
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it("installs the runtime dependencies only, with the types its .d.ts files name", () => {
    const present = readdirSync(join(project, "node_modules"));
    for (const dep of Object.keys(pkg.dependencies).filter((d) => !d.startsWith("@")))
      expect(present).toContain(dep);
    expect(existsSync(join(project, "node_modules", "@types", "better-sqlite3"))).toBe(true);
    expect(present).not.toContain("typescript");
    expect(present).not.toContain("vitest");
  });

  it("imports from ESM, every entry point, and keeps a ledger with the addon", async () => {
    writeFileSync(join(project, "consumer.mjs"), CONSUMER_MJS);
    const r = await run(process.execPath, ["consumer.mjs"], project);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      status: "judged",
      calls: 1,
      version: pkg.version,
      client: "function",
      phantom: "function",
      guards: "function",
    });
  });

  it("npx judge-guard runs the installed binary, never one fetched from the registry", async () => {
    const version = await run("npx", ["--no", "--", "judge-guard", "--version"], project);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(pkg.version);
    const replay = await run(
      "npx",
      ["--no", "--", "judge-guard", "replay", join(ROOT, "examples", "small.jsonl"), "--json"],
      project,
    );
    expect(replay.code).toBe(1); // small.jsonl has two bad lines on purpose
    expect(JSON.parse(replay.stdout)).toMatchObject({ lines: 32, judged: 16, invalid: 2 });
  });

  it("type-checks a strict TypeScript consumer, the package's own .d.ts files included", async () => {
    writeFileSync(join(project, "consumer.ts"), CONSUMER_TS);
    writeFileSync(join(project, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2));
    const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
    const r = await run(process.execPath, [tsc, "-p", "tsconfig.json"], project);
    expect(`${r.stdout}${r.stderr}`).toBe("");
    expect(r.code).toBe(0);
  });
});
