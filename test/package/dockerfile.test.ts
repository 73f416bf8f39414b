// The Dockerfile and the README's Compose example, checked as far as possible without a Docker
// engine (none runs in CI): what the Dockerfile copies exists and is not ignored, its commands
// are this package's, and its final stage (only the files it copies, its entrypoint, command and
// health check) serves. What is not checked: that the image builds (apt, npm ci and the compile
// of better-sqlite3 inside node:20-slim) and that Compose accepts the file.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, existsSync, readFileSync, symlinkSync } from "node:fs";
import { join, posix } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { checkVariableNames } from "../../src/index.js";
import { ensureBuilt, ROOT } from "../helpers/cli.js";
import { freePort } from "../helpers/sidecar.js";
import { useTempDir } from "../helpers/tmp.js";

const tempDir = useTempDir();
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL");
});
beforeAll(ensureBuilt, 120_000);

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  bin: Record<string, string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  engines: { node: string };
};

interface Instruction {
  readonly op: string;
  readonly args: string;
  readonly line: number;
}

/** The Dockerfile's instructions, continuation lines joined, comments left out. */
function instructions(): Instruction[] {
  const lines = readFileSync(join(ROOT, "Dockerfile"), "utf8").split("\n");
  const out: Instruction[] = [];
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let text = lines[i]!.trim();
    if (text === "" || text.startsWith("#")) continue;
    while (text.endsWith("\\")) text = `${text.slice(0, -1).trim()} ${lines[++i]!.trim()}`;
    const m = /^([A-Z]+)\s+(.*)$/.exec(text);
    if (!m) throw new Error(`Dockerfile line ${start + 1}: not an instruction: ${text}`);
    out.push({ op: m[1]!, args: m[2]!, line: start + 1 });
  }
  return out;
}

/** Instructions by stage, each stage starting with its FROM. */
function stages(): Instruction[][] {
  const out: Instruction[][] = [];
  for (const i of instructions()) {
    if (i.op === "FROM") out.push([i]);
    else out.at(-1)!.push(i);
  }
  return out;
}

const jsonArgs = (i: Instruction | undefined): string[] => JSON.parse(i!.args) as string[];

/** Whether .dockerignore leaves `path` out of the build context (its patterns: names and *.ext). */
function ignored(path: string): boolean {
  const patterns = readFileSync(join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  return patterns.some((p) => {
    if (p.startsWith("*.")) return path.endsWith(p.slice(1));
    if (/[*?[\]!]/.test(p)) throw new Error(`.dockerignore: pattern ${p} is beyond this test's matcher`);
    return path === p || path.startsWith(`${p}/`);
  });
}

describe("the Dockerfile", () => {
  it("builds on node:20-slim and runs on it, the Node the package requires", () => {
    const [build, run] = stages();
    expect(build![0]!.args).toBe("node:20-slim AS build");
    expect(run![0]!.args).toBe("node:20-slim");
    expect(stages()).toHaveLength(2);
    expect(pkg.engines.node).toBe(">=20");
  });

  it("copies into the build only files that exist here and are not left out of the context", () => {
    const sources = stages()[0]!
      .filter((i) => i.op === "COPY")
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    expect(sources).toEqual(
      expect.arrayContaining(["package.json", "package-lock.json", ".npmrc", "tsconfig.json", "src"]),
    );
    for (const s of sources) {
      expect(existsSync(join(ROOT, s)), s).toBe(true);
      expect(ignored(s), `${s} is in .dockerignore`).toBe(false);
    }
    // A host's own build and install never reach the image.
    for (const p of ["node_modules", "dist", "data/judge-guard.db"]) expect(ignored(p), p).toBe(true);
  });

  it("runs this package's npm commands, each after the files it needs are copied", () => {
    const build = stages()[0]!;
    const copied = new Set<string>();
    const build_ = JSON.parse(readFileSync(join(ROOT, "tsconfig.build.json"), "utf8")) as {
      extends: string;
      include: string[];
    };
    let ran = 0;
    for (const i of build) {
      if (i.op === "COPY") for (const s of i.args.split(/\s+/).slice(0, -1)) copied.add(s);
      if (i.op !== "RUN") continue;
      for (const command of i.args.split("&&").map((c) => c.trim())) {
        const words = command.split(/\s+/);
        if (words[0] !== "npm") continue;
        ran++;
        if (words[1] === "ci")
          expect([...copied]).toEqual(
            expect.arrayContaining(["package.json", "package-lock.json", ".npmrc"]),
          );
        if (words[1] === "rebuild") expect(Object.keys(pkg.dependencies)).toContain(words[2]);
        if (words[1] === "run") {
          expect(Object.keys(pkg.scripts), command).toContain(words[2]);
          // The build script's project, what it extends and includes, are in the image by then.
          const project = /-p (\S+)/.exec(pkg.scripts[words[2]!]!)?.[1];
          expect(copied).toContain(project);
          expect(copied).toContain(posix.normalize(build_.extends));
          for (const inc of build_.include) expect(copied).toContain(inc);
        }
      }
    }
    expect(ran).toBeGreaterThanOrEqual(4); // ci, rebuild, run build, prune
  });

  it("runs as a user other than root, the package's bin as its entrypoint, serve as its command", () => {
    const run = stages()[1]!;
    const user = run.findLast((i) => i.op === "USER")?.args;
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    const workdir = run.find((i) => i.op === "WORKDIR")!.args;
    const [node, main] = jsonArgs(run.find((i) => i.op === "ENTRYPOINT"));
    expect(node).toBe("node");
    expect(posix.relative(workdir, main!)).toBe(posix.normalize(pkg.bin["judge-guard"]!));
    const copiedFromBuild = run
      .filter((i) => i.op === "COPY" && i.args.startsWith("--from=build"))
      .map((i) => i.args.split(/\s+/)[1]);
    expect(copiedFromBuild).toEqual(["/src/package.json", "/src/node_modules", "/src/dist"]);
    expect(jsonArgs(run.find((i) => i.op === "CMD"))[0]).toBe("serve");
  });

  it("sets only variables judge-guard knows", () => {
    const env = stages()
      .flat()
      .filter((i) => i.op === "ENV")
      .flatMap((i) => [...i.args.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!] as const));
    expect(() => checkVariableNames(Object.fromEntries(env))).not.toThrow();
  });

  it("its final stage, with only the files it copies, serves and passes its own health check", async () => {
    const run = stages()[1]!;
    const workdir = run.find((i) => i.op === "WORKDIR")!.args;
    // The image's /opt/judge-guard: package.json, dist/ and node_modules/, nothing else.
    const image = tempDir();
    cpSync(join(ROOT, "package.json"), join(image, "package.json"));
    cpSync(join(ROOT, "dist"), join(image, "dist"), { recursive: true });
    symlinkSync(join(ROOT, "node_modules"), join(image, "node_modules"));
    const inImage = (p: string) => p.replace(workdir, image);
    const env: Record<string, string> = { PATH: process.env.PATH ?? "" };
    for (const i of run.filter((x) => x.op === "ENV"))
      for (const m of i.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
    // The image's /data, here; and the token a non-loopback address needs.
    env.JUDGE_GUARD_DB = env.JUDGE_GUARD_DB!.replace(/^\/data\//, `${tempDir()}/`);
    env.JUDGE_GUARD_TOKEN = "docker-test-token-0123456789";
    const port = String(await freePort());
    const expose = run.find((i) => i.op === "EXPOSE")!.args;
    const [node, main] = jsonArgs(run.find((i) => i.op === "ENTRYPOINT"));
    const cmd = jsonArgs(run.find((i) => i.op === "CMD")).map((a) => (a === expose ? port : a));
    expect(cmd).toEqual(["serve", "--host", "0.0.0.0", "--port", port]);
    const child = spawn(node === "node" ? process.execPath : node!, [inImage(main!), ...cmd], {
      cwd: image,
      env,
    });
    children.push(child);
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d;
    });
    for (let i = 0; i < 300 && !out.includes("serving on"); i++) await new Promise((r) => setTimeout(r, 20));
    expect(out).toContain(`judge-guard serving on http://0.0.0.0:${port} (bearer token required)`);
    const check = run.find((i) => i.op === "HEALTHCHECK")!.args;
    const probe = JSON.parse(check.slice(check.indexOf("CMD ") + 4)) as string[];
    expect(probe.join(" ")).toContain(`:${expose}/healthz`);
    const code = await new Promise<number>((resolve) =>
      execFile(
        process.execPath,
        probe.slice(1).map((a) => a.replace(`:${expose}/`, `:${port}/`)),
        { timeout: 10_000 },
        (err) => resolve(err ? 1 : 0),
      ),
    );
    expect(code).toBe(0);
  });
});

describe("the README's Compose example", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const marker = readme.indexOf("<!-- checked by test/package/dockerfile.test.ts -->");
  const open = readme.indexOf("```yaml", marker);
  const yaml = readme.slice(open + "```yaml".length, readme.indexOf("```", open + 7));

  it("is marked, and builds the Dockerfile rather than fetching a package by name", () => {
    expect(marker).toBeGreaterThan(-1);
    expect(yaml).not.toMatch(/npx|npm (install|ci)|image:\s*node/);
    const builds = [...yaml.matchAll(/^\s+build: (\S+)/gm)].map((m) => m[1]);
    expect(builds).toEqual(["./judge-guard", "./judge-guard"]);
  });

  it("is indented by two spaces, without tabs", () => {
    for (const line of yaml.split("\n").filter((l) => l.trim() !== "")) {
      expect(line).not.toContain("\t");
      expect((/^ */.exec(line)![0].length - 3) % 2, line).toBe(0);
    }
  });

  it("sets only variables judge-guard knows, and the token wherever the sidecar is reached", () => {
    const names = [...yaml.matchAll(/^\s+(JUDGE_GUARD_\w+):/gm)].map((m) => m[1]!);
    expect(() => checkVariableNames(Object.fromEntries(names.map((n) => [n, "x"])))).not.toThrow();
    expect(names.filter((n) => n === "JUDGE_GUARD_TOKEN")).toHaveLength(2);
  });

  it("points Phantom's preload at the file the image holds, copied from the image's folder", () => {
    const workdir = stages()[1]!.find((i) => i.op === "WORKDIR")!.args;
    expect(yaml).toContain(`cp -R ${workdir}/. /preload/`);
    const preload = /--preload=(\S+)/.exec(yaml)![1]!;
    expect(preload.startsWith(`${workdir}/dist/`)).toBe(true);
    expect(existsSync(join(ROOT, preload.slice(workdir.length + 1)))).toBe(true);
  });

  it("runs the sidecar with no command of its own: the image's serve on 0.0.0.0:8787", () => {
    const sidecar = yaml.slice(yaml.indexOf("judge-guard:"), yaml.indexOf("judge-guard-preload:"));
    expect(sidecar).not.toMatch(/^\s+(command|entrypoint):/m);
    expect(yaml).toContain("JUDGE_GUARD_URL: http://judge-guard:8787");
  });
});
