// The options table is the one definition of each option's limits and default: the JSDoc that
// shows a default in an editor states the table's, and each limit reads the same in code and in
// its variable.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { OPTION_NAMES, OPTIONS, type OptionPath } from "../../src/guard/options.js";
import {
  ConfigError,
  createGuard,
  DEFAULTS,
  ENV_VARIABLES,
  fromEnv,
  type GuardOptions,
} from "../../src/index.js";

/** Each `readonly name?:` of `interface` in `file` with its `@default` text. */
function jsdocDefaults(file: string, name: string): Map<string, string> {
  const source = readFileSync(new URL(`../../src/${file}`, import.meta.url), "utf8");
  const body = source.slice(source.indexOf(`export interface ${name} {`));
  const declared = body.slice(0, body.indexOf("\n}\n"));
  const out = new Map<string, string>();
  for (const m of declared.matchAll(/\/\*\*((?:(?!\*\/)[\s\S])*?)\*\/\s*readonly (\w+)\??:/g)) {
    const tag = /@default (.+?)\s*$/m.exec(m[1]!.replace(/\s*\*\s*$/gm, ""));
    if (tag !== undefined && tag !== null) out.set(m[2]!, tag[1]!);
  }
  return out;
}

/** A `@default` written as a literal ("enforce", 86_400_000 (24 h), Infinity), or undefined for a name. */
function literal(text: string): unknown {
  const first = text.replace(/\s*\(.*\)$/, "").replace(/(\d)_(\d)/g, "$1$2");
  if (first === "Infinity") return Infinity;
  try {
    return JSON.parse(first);
  } catch {
    return undefined; // DEFAULT_PRICES, a SteadyClock, readUsage: not a value of the table
  }
}

describe("the JSDoc @default of each option", () => {
  const guard = jsdocDefaults("guard/options.ts", "GuardOptions");
  const estimator = jsdocDefaults("budget/estimator.ts", "EstimatorOptions");
  const similarity = Object.fromEntries(
    [...(guard.get("similarity") ?? "").matchAll(/(\w+): ([\d.]+)/g)].map((m) => [m[1], Number(m[2])]),
  );
  const documented = (path: OptionPath): unknown => {
    const [head, field] = path.split(".") as [string, string | undefined];
    if (field === undefined) return guard.has(head) ? literal(guard.get(head)!) : "(no @default)";
    return head === "similarity" ? similarity[field] : literal(estimator.get(field) ?? "");
  };

  it.each((Object.keys(OPTIONS) as OptionPath[]).filter((p) => DEFAULTS[p] !== undefined))(
    "%s states the table's default",
    (path) => {
      expect(documented(path)).toEqual(DEFAULTS[path]);
    },
  );

  it.each((Object.keys(OPTIONS) as OptionPath[]).filter((p) => DEFAULTS[p] === undefined))(
    "%s, which has no default value, states none",
    (path) => {
      expect(guard.has(path) ? literal(guard.get(path)!) : undefined).toBeUndefined();
    },
  );
});

describe("a limit reads the same in code and in its variable", () => {
  /** The message of the ConfigError `f` throws. */
  const messageOf = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as Error).message;
    }
    throw new Error("no ConfigError");
  };
  const variableOf = (path: OptionPath) => ENV_VARIABLES.find((v) => v.option === path)!.name;

  it.each<[OptionPath, unknown, string, string, string]>([
    ["concurrency", 0, "0", "an integer >= 1", "a whole number >= 1"],
    ["repeatThreshold", 1, "1", "an integer >= 2", "a whole number >= 2"],
    [
      "sessionMaxCalls",
      0,
      "0",
      "an integer >= 1, or Infinity for no limit",
      'a whole number >= 1, or "none"',
    ],
    ["leaseMs", 500, "500ms", "an integer >= 1000", "a duration of at least 1s"],
    ["budgetWindowMs", 30_000, "30s", "an integer >= 60000", "a duration of at least 60s"],
    ["similarity.maxRelativeDifference", 1.5, "1.5", "a number from 0 to 1", "a number from 0 to 1"],
    ["estimator.charsPerToken", 0, "0", "a number > 0", "a number > 0"],
    ["mode", "block", "block", "one of enforce, shadow", "one of enforce, shadow"],
    ["alertAt", 2, "2", "a fraction from 0 to 1 (0 turns it off)", 'a fraction such as "0.8", or "off"'],
  ])("%s", (path, value, text, inCode, inVariable) => {
    const [head, field] = path.split(".") as [keyof GuardOptions, string | undefined];
    const options = { [head]: field === undefined ? value : { [field]: value } } as GuardOptions;
    expect(messageOf(() => createGuard({ ledger: ":memory:", logger: "silent", ...options }))).toBe(
      `option ${path} must be ${inCode}, got ${JSON.stringify(value)}`,
    );
    const name = variableOf(path);
    expect(messageOf(() => fromEnv({ [name]: text }))).toBe(
      `${name}=${JSON.stringify(text)} is not valid: expected ${inVariable}`,
    );
  });
});

describe("an option the guard does not know", () => {
  const refused = (options: object): ConfigError => {
    try {
      createGuard({ ledger: ":memory:", ...options } as GuardOptions).close();
    } catch (e) {
      return e as ConfigError;
    }
    throw new Error(`createGuard took ${JSON.stringify(options)}`);
  };

  it("stops construction, naming the option it looks like: a misspelt cap is not silently no cap", () => {
    const e = refused({ judgeBudgets: { gate: 0.2 } });
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.code).toBe("CONFIG_INVALID");
    expect(e.message).toBe("unknown option judgeBudgets: did you mean judgeBudgetsUsd?");
    expect(refused({ sessionBudget: 1 }).message).toContain("did you mean sessionBudgetUsd?");
  });

  it("lists the options when nothing is close", () => {
    const e = refused({ zzz: 1 });
    expect(e.message).toMatch(/^unknown option zzz: the options are ledger, mode, onError, /);
  });

  it("is checked inside the nested options too", () => {
    const field = Object.keys(OPTIONS)
      .find((p) => p.startsWith("similarity."))!
      .slice("similarity.".length);
    const e = refused({ similarity: { [`${field}x`]: 1 } });
    expect(e.message).toBe(`unknown option ${field}x of similarity: did you mean ${field}?`);
  });

  it("every option GuardOptions declares is taken (given as undefined, each takes its default)", async () => {
    expect(OPTION_NAMES).toHaveLength(32);
    const every = Object.fromEntries(OPTION_NAMES.map((name) => [name, undefined]));
    const g = createGuard({ ...every, ledger: ":memory:" } as GuardOptions);
    expect(g.session("k")).toMatchObject({
      budgetUsd: DEFAULTS.sessionBudgetUsd,
      maxCalls: DEFAULTS.sessionMaxCalls,
    });
    await g.close();
  });
});
