// Every Phantom code example in the README type-checks against Phantom's real types: each block
// marked `<!-- checked against Phantom ... -->` is compiled with Phantom's own tsconfig and
// TypeScript, in a Phantom folder, with `judge-guard` resolving to this build.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  installedPhantom,
  PHANTOM_VERSIONS,
  phantomUnavailable,
  phantomWorkdir,
  REPO,
} from "../helpers/phantom.js";

const unavailable = phantomUnavailable();
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Example {
  readonly line: number;
  readonly versions: readonly string[];
  readonly code: string;
}

/** The README's marked TypeScript blocks, with the Phantom versions each must compile against. */
function examples(): Example[] {
  const lines = readFileSync(join(REPO, "README.md"), "utf8").split("\n");
  const out: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^<!-- checked against Phantom (.+) -->$/.exec(lines[i]!.trim());
    if (!m) continue;
    const versions = m[1]!.split(/\s+and\s+/).map((v) => v.trim());
    const open = i + 1;
    if (lines[open]?.trim() !== "```ts")
      throw new Error(`README line ${open + 1}: a marked example must be a \`\`\`ts block`);
    const close = lines.findIndex((l, j) => j > open && l.trim() === "```");
    out.push({ line: open + 1, versions, code: lines.slice(open + 1, close).join("\n") });
  }
  return out;
}

function tsc(cwd: string, project: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(cwd, "node_modules/typescript/bin/tsc"), "-p", project],
      { cwd, timeout: 180_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });
}

describe.skipIf(unavailable !== undefined)("the README's Phantom examples", () => {
  it("marks examples for both versions", () => {
    const all = examples();
    expect(all.length).toBeGreaterThanOrEqual(3);
    for (const v of PHANTOM_VERSIONS)
      expect(
        all.some((e) => e.versions.includes(v)),
        v,
      ).toBe(true);
  });

  for (const version of PHANTOM_VERSIONS) {
    it(`type-check against Phantom ${version}'s own types and compiler`, async () => {
      const mine = examples().filter((e) => e.versions.includes(version));
      const base = mkdtempSync(join(tmpdir(), `jg-readme-${version}-`));
      dirs.push(base);
      const work = phantomWorkdir(installedPhantom(version), join(base, "work"));
      const files = mine.map((e, i) => {
        const name = `readme-example-${i}.ts`;
        // Each block is a module of its own, as a user would paste it.
        writeFileSync(join(work, name), `${e.code}\nexport {};\n`);
        return name;
      });
      const dist = (p: string) => [join(REPO, "dist", p)];
      writeFileSync(
        join(work, "tsconfig.readme.json"),
        JSON.stringify({
          extends: "./tsconfig.json",
          compilerOptions: {
            rootDir: ".",
            noEmit: true,
            paths: {
              "judge-guard": dist("index.d.ts"),
              "judge-guard/phantom": dist("adapters/index.d.ts"),
              "judge-guard/client": dist("client/client.d.ts"),
            },
          },
          include: files,
        }),
      );
      const r = await tsc(work, "tsconfig.readme.json");
      const ours = r.out
        .split("\n")
        .filter((l) => /^readme-example-\d+\.ts/.test(l))
        .map((l) => {
          const i = Number(/^readme-example-(\d+)/.exec(l)![1]);
          return `README block at line ${mine[i]!.line}: ${l}`;
        });
      expect(ours).toEqual([]);
    }, 240_000);
  }
});

if (unavailable !== undefined) {
  describe("the README's Phantom examples", () => {
    it.skip(`skipped: ${unavailable}`, () => {});
  });
}
