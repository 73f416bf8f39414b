import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { checkVariableNames } from "../../src/index.js";
import { ROOT } from "../helpers/cli.js";

/**
 * The README's fleet example (examples/fleet/*.yaml), checked as far as possible without a
 * Docker engine: both files parse as YAML (strictly: a duplicate key or a bad indent fails), set
 * only variables judge-guard knows, build the sidecar from this repository's Dockerfile, keep the
 * database's password out of the agent's environment, and name one database and one user on both
 * sides.
 */
const parse = (file: string): Record<string, unknown> =>
  parseYaml(readFileSync(join(ROOT, file), "utf8"), { uniqueKeys: true, strict: true }) as Record<
    string,
    unknown
  >;

interface Service {
  healthcheck?: { test?: string[] };
  build?: string;
  image?: string;
  command?: unknown;
  entrypoint?: string[];
  env_file?: string | string[];
  environment?: Record<string, string>;
  volumes?: string[];
}
const services = (doc: Record<string, unknown>): Record<string, Service> =>
  doc.services as Record<string, Service>;

describe("the fleet's Compose files", () => {
  it("the agent host: the sidecar built from the Dockerfile, the ledger from a file Phantom does not read", () => {
    const s = services(parse("examples/fleet/agent-host.yaml"));
    expect(Object.keys(s)).toEqual(["judge-guard", "judge-guard-preload", "phantom"]);
    expect(s["judge-guard"]!.build).toBe("./judge-guard");
    expect(s["judge-guard"]!.command).toBeUndefined();
    expect(s["judge-guard"]!.env_file).toBe("./judge-guard.env");
    // Healthy means guarding on the shared database: /readyz (503 while it cannot be used).
    expect(s["judge-guard"]!.healthcheck?.test?.join(" ")).toContain("http://127.0.0.1:8787/readyz");
    for (const svc of Object.values(s)) expect(() => checkVariableNames(svc.environment ?? {})).not.toThrow();
    // The database URL (and its password) only reaches the sidecar.
    const phantom = s.phantom!;
    expect(phantom.environment?.JUDGE_GUARD_DB).toBeUndefined();
    expect(phantom.env_file).toBeUndefined();
    expect(phantom.environment?.JUDGE_GUARD_URL).toBe("http://judge-guard:8787");
    const preload = /--preload=(\S+)/.exec(phantom.environment!.BUN_OPTIONS!)![1]!;
    expect(existsSync(join(ROOT, preload.replace("/opt/judge-guard/", "")))).toBe(true);
    expect(s["judge-guard-preload"]!.entrypoint!.join(" ")).toContain("cp -R /opt/judge-guard/. /preload/");
  });

  it("the database host: one PostgreSQL whose user and database are those of the URL the hosts are told", () => {
    const s = services(parse("examples/fleet/postgres.yaml"));
    expect(Object.keys(s)).toEqual(["postgres"]);
    const env = s.postgres!.environment!;
    expect(s.postgres!.image).toMatch(/^postgres:\d+$/);
    const comment = readFileSync(join(ROOT, "examples/fleet/agent-host.yaml"), "utf8");
    const url = new URL(/JUDGE_GUARD_DB=(postgres:\/\/\S+)/.exec(comment)![1]!);
    expect(url.username).toBe(env.POSTGRES_USER);
    expect(url.pathname).toBe(`/${env.POSTGRES_DB}`);
    expect(env.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD/);
  });

  it("the README's Fleets section names both files and the commands that start them", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const fleets = readme.slice(readme.indexOf("## Fleets"));
    expect(fleets).toContain("examples/fleet/postgres.yaml");
    expect(fleets).toContain("examples/fleet/agent-host.yaml");
    expect(fleets).toContain("docker compose -f postgres.yaml up -d");
  });
});
