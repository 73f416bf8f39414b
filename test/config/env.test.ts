import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_ESTIMATOR } from "../../src/budget/estimator.js";
import { type OptionPath, optionAt, resolveOptions } from "../../src/guard/options.js";
import {
  ConfigError,
  createGuard,
  DEFAULT_PRICES,
  DEFAULT_SIMILARITY,
  DEFAULTS,
  ENV_VARIABLES,
  fromEnv,
  type GuardOptions,
  isJudgeGuardError,
} from "../../src/index.js";
import { configErrorOf } from "../helpers/config.js";
import { CANNED } from "../helpers/replies.js";
import { useTempDir } from "../helpers/tmp.js";

const tempDir = useTempDir();

/** Writes `text` to a fresh temporary file and returns its path. */
function file(name: string, text: string): string {
  const path = join(tempDir(), name);
  writeFileSync(path, text);
  return path;
}

/** The options object that sets only `option` ("mode", or a nested "similarity.maxWordDifference"). */
function only(option: OptionPath, value: unknown): GuardOptions {
  const [head, field] = option.split(".");
  return (field === undefined ? { [head!]: value } : { [head!]: { [field]: value } }) as GuardOptions;
}

describe("fromEnv: each variable sets its option", () => {
  // One sample per variable: [raw value, parsed option value]. Every variable of ENV_VARIABLES
  // must appear here, so a new variable cannot go untested.
  const samples: Record<string, [string, unknown]> = {
    JUDGE_GUARD_DB: ["/var/lib/phantom/judge-guard.db", "/var/lib/phantom/judge-guard.db"],
    JUDGE_GUARD_MODE: ["shadow", "shadow"],
    JUDGE_GUARD_ON_ERROR: ["open", "open"],
    JUDGE_GUARD_REPEAT_THRESHOLD: ["4", 4],
    JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD: ["1", 1],
    JUDGE_GUARD_MIN_REPLY_CHARS: ["0", 0],
    JUDGE_GUARD_CANNED_PATTERNS: ['["session busy", "^please hold"]', ["session busy", "^please hold"]],
    JUDGE_GUARD_BUILTIN_PATTERNS: ["false", false],
    JUDGE_GUARD_MAX_WORD_DIFFERENCE: ["0", 0],
    JUDGE_GUARD_MAX_RELATIVE_DIFFERENCE: ["0.35", 0.35],
    JUDGE_GUARD_MAX_NUMBER_DIFFERENCE: ["5", 5],
    JUDGE_GUARD_SESSION_BUDGET_USD: ["2.5", 2.5],
    JUDGE_GUARD_SESSION_MAX_CALLS: ["200", 200],
    JUDGE_GUARD_BUDGET_WINDOW: ["7d", 7 * 86_400_000],
    JUDGE_GUARD_DAILY_BUDGET_USD: ["0.50", 0.5],
    JUDGE_GUARD_JUDGE_BUDGET_USD: ["2", 2],
    JUDGE_GUARD_JUDGE_BUDGETS: [
      '{"quality_assessment": 0.5, "gate": "none"}',
      { quality_assessment: 0.5, gate: Infinity },
    ],
    JUDGE_GUARD_CONCURRENCY: ["2", 2],
    JUDGE_GUARD_PRICES: ["(written per test)", undefined],
    JUDGE_GUARD_DEFAULT_OUTPUT_TOKENS: ["300", 300],
    JUDGE_GUARD_DEFAULT_MAX_TOKENS: ["8192", 8192],
    JUDGE_GUARD_CHARS_PER_TOKEN: ["3.6", 3.6],
    JUDGE_GUARD_PROMPT_OVERHEAD_TOKENS: ["1200", 1200],
    JUDGE_GUARD_MAX_TRANSCRIPT_TOKENS: ["500000", 500_000],
    JUDGE_GUARD_SIGNAL_COOLDOWN: ["90s", 90_000],
    JUDGE_GUARD_VERDICT_TTL: ["0", 0],
    JUDGE_GUARD_VERDICT_CACHE_SIZE: ["50", 50],
    JUDGE_GUARD_MAX_SESSIONS: ["100", 100],
    JUDGE_GUARD_ADMISSION_WAIT: ["2m", 120_000],
    JUDGE_GUARD_LEASE: ["1m", 60_000],
    JUDGE_GUARD_ESCALATION: ["none", "none"],
    JUDGE_GUARD_ALERT_AT: ["0.9", 0.9],
    JUDGE_GUARD_LOG_LEVEL: ["debug", "debug"],
  };

  it("has a sample for every documented variable", () => {
    expect(Object.keys(samples).sort()).toEqual(ENV_VARIABLES.map((v) => v.name).sort());
  });

  it.each(ENV_VARIABLES.filter((v) => v.name !== "JUDGE_GUARD_PRICES").map((v) => [v.name, v.option]))(
    "%s sets %s",
    (name, option) => {
      const [raw, expected] = samples[name]!;
      expect(fromEnv({ [name]: raw })).toEqual(only(option, expected));
    },
  );

  it("each nested variable names a field its option really has", () => {
    const nested = ENV_VARIABLES.filter((v) => v.option.includes("."));
    expect(nested.map((v) => v.option).sort()).toEqual(
      Object.entries({ similarity: DEFAULT_SIMILARITY, estimator: DEFAULT_ESTIMATOR })
        .flatMap(([head, fields]) => Object.keys(fields).map((f) => `${head}.${f}`))
        .sort(),
    );
  });

  it("nested variables combine into one object per option", () => {
    expect(
      fromEnv({
        JUDGE_GUARD_MAX_WORD_DIFFERENCE: "3",
        JUDGE_GUARD_MAX_NUMBER_DIFFERENCE: "1",
        JUDGE_GUARD_CHARS_PER_TOKEN: "3",
        JUDGE_GUARD_DEFAULT_MAX_TOKENS: "2048",
      }),
    ).toEqual({
      similarity: { maxWordDifference: 3, maxNumberDifference: 1 },
      estimator: { charsPerToken: 3, defaultMaxTokens: 2048 },
    });
  });

  it("overrides of a nested option win field by field", () => {
    expect(
      fromEnv(
        { JUDGE_GUARD_MAX_WORD_DIFFERENCE: "3", JUDGE_GUARD_MAX_NUMBER_DIFFERENCE: "1" },
        { similarity: { maxWordDifference: 5 }, estimator: { charsPerToken: 3 } },
      ),
    ).toEqual({
      similarity: { maxWordDifference: 5, maxNumberDifference: 1 },
      estimator: { charsPerToken: 3 },
    });
  });

  it("an invalid override is not blamed on the variable it overrides", () => {
    let error: unknown;
    try {
      fromEnv({ JUDGE_GUARD_MAX_RELATIVE_DIFFERENCE: "0.5" }, { similarity: { maxRelativeDifference: 2 } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe("similarity.maxRelativeDifference");
    expect((error as ConfigError).message).not.toContain("JUDGE_GUARD_");
  });

  it("JUDGE_GUARD_PRICES reads a JSON file and merges it over the built-in table", () => {
    const path = file(
      "prices.json",
      JSON.stringify({
        "claude-sonnet-4-6": { input: 4, output: 20 },
        "acme-judge-1": { input: 2, output: 8, cacheRead: 0.2 },
      }),
    );
    const { prices } = fromEnv({ JUDGE_GUARD_PRICES: path });
    expect(prices).toEqual({
      ...DEFAULT_PRICES,
      "claude-sonnet-4-6": { input: 4, output: 20 },
      "acme-judge-1": { input: 2, output: 8, cacheRead: 0.2 },
    });
  });

  it("reads nothing but JUDGE_GUARD_* variables", () => {
    expect(fromEnv({ PATH: "/usr/bin", HOME: "/root", JUDGE_GUARD: "x" })).toEqual({});
  });

  it.each([
    ["the empty string", ""],
    ["blanks", "   "],
  ])("treats %s as unset", (_name, blank) => {
    const env = Object.fromEntries(ENV_VARIABLES.map((v) => [v.name, blank]));
    expect(fromEnv(env)).toEqual({});
  });

  it("trims values", () => {
    expect(fromEnv({ JUDGE_GUARD_MODE: " Shadow\n", JUDGE_GUARD_REPEAT_THRESHOLD: " 5 " })).toEqual({
      mode: "shadow",
      repeatThreshold: 5,
    });
  });

  it("lets overrides win over the environment", () => {
    expect(
      fromEnv({ JUDGE_GUARD_MODE: "shadow", JUDGE_GUARD_CONCURRENCY: "2" }, { mode: "enforce" }),
    ).toEqual({ mode: "enforce", concurrency: 2 });
  });

  it("documents defaults that read back as the guard's defaults", () => {
    const withDefault = ENV_VARIABLES.filter((v) => DEFAULTS[v.option] !== undefined);
    expect(withDefault.length).toBeGreaterThan(25);
    for (const v of withDefault) {
      expect(optionAt(fromEnv({ [v.name]: v.defaultText }), v.option), v.name).toEqual(DEFAULTS[v.option]);
    }
  });

  it("documents what an option without a default value does", () => {
    expect(
      ENV_VARIABLES.filter((v) => DEFAULTS[v.option] === undefined).map((v) => [v.name, v.defaultText]),
    ).toEqual([
      ["JUDGE_GUARD_CANNED_PATTERNS", "(none)"],
      ["JUDGE_GUARD_JUDGE_BUDGETS", "(none)"],
      ["JUDGE_GUARD_PRICES", "(built in)"],
    ]);
  });

  it("documents defaults of nested options that the guard applies", () => {
    const nested = ENV_VARIABLES.filter((v) => v.option.includes("."));
    expect(nested).toHaveLength(7);
    const resolved = resolveOptions({}) as unknown as GuardOptions;
    for (const v of nested) {
      expect(optionAt(fromEnv({ [v.name]: v.defaultText }), v.option), v.name).toBe(
        optionAt(resolved, v.option),
      );
    }
  });
});

describe("fromEnv: value formats", () => {
  it.each<[string, string, number]>([
    ["2.5", "JUDGE_GUARD_SESSION_BUDGET_USD", 2.5],
    ["0", "JUDGE_GUARD_SESSION_BUDGET_USD", 0],
    ["none", "JUDGE_GUARD_SESSION_BUDGET_USD", Infinity],
    ["NONE", "JUDGE_GUARD_DAILY_BUDGET_USD", Infinity],
    ["unlimited", "JUDGE_GUARD_DAILY_BUDGET_USD", Infinity],
    ["off", "JUDGE_GUARD_SESSION_BUDGET_USD", Infinity],
    ["none", "JUDGE_GUARD_SESSION_MAX_CALLS", Infinity],
  ])("%s for %s is %d", (raw, name, expected) => {
    expect(Object.values(fromEnv({ [name]: raw }))).toEqual([expected]);
  });

  it.each<[string, number]>([
    ["90s", 90_000],
    ["30m", 1_800_000],
    ["24h", 86_400_000],
    ["7d", 604_800_000],
    ["1.5h", 5_400_000],
    ["250ms", 250],
    ["10M", 600_000],
    ["0", 0],
    ["0s", 0],
  ])("duration %s is %d ms", (raw, ms) => {
    expect(fromEnv({ JUDGE_GUARD_SIGNAL_COOLDOWN: raw })).toEqual({ signalCooldownMs: ms });
  });

  it.each<[string, string]>([
    ["JUDGE_GUARD_VERDICT_TTL", "verdictTtlMs"],
    ["JUDGE_GUARD_SIGNAL_COOLDOWN", "signalCooldownMs"],
    ["JUDGE_GUARD_ADMISSION_WAIT", "admissionWaitMs"],
  ])('%s accepts a bare "0"', (name, option) => {
    expect(fromEnv({ [name]: "0" })).toEqual({ [option]: 0 });
  });

  // A bare number is ambiguous: "24" for a window could mean hours as well as milliseconds.
  it.each<[string, string]>([
    ["JUDGE_GUARD_BUDGET_WINDOW", "24"],
    ["JUDGE_GUARD_BUDGET_WINDOW", "86400000"],
    ["JUDGE_GUARD_SIGNAL_COOLDOWN", "250"],
    ["JUDGE_GUARD_VERDICT_TTL", "3600"],
    ["JUDGE_GUARD_ADMISSION_WAIT", "1.5"],
    ["JUDGE_GUARD_LEASE", "30000"],
  ])("%s=%s (a number without a unit) is invalid", (name, value) => {
    const e = configErrorOf({ [name]: value });
    expect(e.setting).toBe(name);
    expect(e.message).toContain(
      `${name}="${value}" is not valid: expected a duration with a unit such as "90s", "30m", "24h" or "7d"`,
    );
  });

  it("JUDGE_GUARD_BUDGET_WINDOW=24 says exactly what is wrong", () => {
    expect(configErrorOf({ JUDGE_GUARD_BUDGET_WINDOW: "24" }).message).toBe(
      'JUDGE_GUARD_BUDGET_WINDOW="24" is not valid: expected a duration with a unit such as "90s", "30m", "24h" or "7d"',
    );
  });

  it.each(["JUDGE_GUARD_BUDGET_WINDOW", "JUDGE_GUARD_LEASE"])(
    "%s=0 is invalid: 0 is no valid value",
    (name) => {
      expect(configErrorOf({ [name]: "0" }).message).toMatch(/at least/);
    },
  );

  it("JUDGE_GUARD_PRICES as inline JSON merges over the built-in table like a file", () => {
    const { prices } = fromEnv({
      JUDGE_GUARD_PRICES:
        ' {"claude-sonnet-4-6": {"input": 4, "output": 20}, "acme-judge-1": {"input": 2, "output": 8}}',
    });
    expect(prices).toEqual({
      ...DEFAULT_PRICES,
      "claude-sonnet-4-6": { input: 4, output: 20 },
      "acme-judge-1": { input: 2, output: 8 },
    });
  });

  it("JUDGE_GUARD_PRICES inline and in a file give the same table", () => {
    const json = JSON.stringify({ "acme-judge-1": { input: 2, output: 8, cacheRead: 0.2 } });
    expect(fromEnv({ JUDGE_GUARD_PRICES: json })).toEqual(
      fromEnv({ JUDGE_GUARD_PRICES: file("prices.json", json) }),
    );
  });
  it.each<[string, boolean]>([
    ["true", true],
    ["1", true],
    ["YES", true],
    ["on", true],
    ["false", false],
    ["0", false],
    ["no", false],
    ["Off", false],
  ])("boolean %s is %s", (raw, expected) => {
    expect(fromEnv({ JUDGE_GUARD_BUILTIN_PATTERNS: raw })).toEqual({ builtinPatterns: expected });
  });

  it("JUDGE_GUARD_CANNED_PATTERNS as a file: one pattern a line, comments and blank lines ignored", () => {
    const path = file(
      "canned.txt",
      [
        "# Phantom bounces seen in production",
        "",
        "another task is running for you",
        "   # an indented comment",
        "  ",
        "^Hang on\\b",
        "",
      ].join("\r\n"),
    );
    expect(fromEnv({ JUDGE_GUARD_CANNED_PATTERNS: path })).toEqual({
      cannedPatterns: ["another task is running for you", "^Hang on\\b"],
    });
  });

  it("JUDGE_GUARD_CANNED_PATTERNS as a file of comments only is an empty list", () => {
    const path = file("canned.txt", "# nothing yet\n\n");
    expect(fromEnv({ JUDGE_GUARD_CANNED_PATTERNS: path })).toEqual({ cannedPatterns: [] });
  });

  // Replies are matched with whitespace collapsed, so pattern lines are trimmed like comment lines.
  it("JUDGE_GUARD_CANNED_PATTERNS file lines are trimmed like comment lines", () => {
    const path = file("canned.txt", "# bounces\n  another task is running for you \n");
    expect(fromEnv({ JUDGE_GUARD_CANNED_PATTERNS: path })).toEqual({
      cannedPatterns: ["another task is running for you"],
    });
  });
});

describe("fromEnv: invalid values", () => {
  // [variable, value, what the message must also mention besides the variable]
  it.each<[string, string, string[]]>([
    ["JUDGE_GUARD_SESSION_BUDGET_USD", "-1", ['"-1"', ">= 0"]],
    ["JUDGE_GUARD_SESSION_BUDGET_USD", "abc", ['"abc"']],
    ["JUDGE_GUARD_DAILY_BUDGET_USD", "$50", ['"$50"']],
    ["JUDGE_GUARD_DAILY_BUDGET_USD", "Infinity USD", ['"Infinity USD"']],
    ["JUDGE_GUARD_REPEAT_THRESHOLD", "1", ['"1"', ">= 2"]],
    ["JUDGE_GUARD_REPEAT_THRESHOLD", "zero", ['"zero"']],
    ["JUDGE_GUARD_REPEAT_THRESHOLD", "3.5", ['"3.5"']],
    ["JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD", "0", ['"0"', ">= 1"]],
    ["JUDGE_GUARD_MIN_REPLY_CHARS", "-3", ['"-3"']],
    ["JUDGE_GUARD_SESSION_MAX_CALLS", "0", ['"0"']],
    ["JUDGE_GUARD_CONCURRENCY", "none", ['"none"']],
    ["JUDGE_GUARD_VERDICT_CACHE_SIZE", "1e3", ['"1e3"']],
    ["JUDGE_GUARD_MAX_SESSIONS", "many", ['"many"']],
    ["JUDGE_GUARD_MODE", "block", ['"block"', "enforce", "shadow"]],
    ["JUDGE_GUARD_ON_ERROR", "ignore", ['"ignore"', "closed", "open"]],
    ["JUDGE_GUARD_LOG_LEVEL", "loud", ['"loud"', "warn"]],
    ["JUDGE_GUARD_BUILTIN_PATTERNS", "maybe", ['"maybe"']],
    ["JUDGE_GUARD_BUDGET_WINDOW", "30s", ['"30s"', "60s"]],
    ["JUDGE_GUARD_BUDGET_WINDOW", "a day", ['"a day"']],
    ["JUDGE_GUARD_SIGNAL_COOLDOWN", "-5m", ['"-5m"']],
    ["JUDGE_GUARD_VERDICT_TTL", "1w", ['"1w"']],
    ["JUDGE_GUARD_LEASE", "500ms", ['"500ms"']],
    ["JUDGE_GUARD_CANNED_PATTERNS", '["(unclosed"]', ['"(unclosed"', "regular expression"]],
    ["JUDGE_GUARD_CANNED_PATTERNS", '["ok", 42]', [JSON.stringify('["ok", 42]'), "strings"]],
    ["JUDGE_GUARD_CANNED_PATTERNS", '["ok",', [JSON.stringify('["ok",'), "JSON"]],
    ["JUDGE_GUARD_CANNED_PATTERNS", '[""]', ["#1", "empty"]],
    ["JUDGE_GUARD_CANNED_PATTERNS", "/nonexistent/canned.txt", ["/nonexistent/canned.txt", "ENOENT"]],
    ["JUDGE_GUARD_PRICES", "/nonexistent/prices.json", ["/nonexistent/prices.json", "ENOENT"]],
    ["JUDGE_GUARD_PRICES", '{"acme-judge-1": {"input": 2,', ["not valid JSON"]],
    ["JUDGE_GUARD_PRICES", '{"acme-judge-1": {"input": 2}}', ['"acme-judge-1"', '"output"']],
    [
      "JUDGE_GUARD_PRICES",
      '{"acme-judge-1": {"input": 2, "output": -8}}',
      ['"acme-judge-1"', "output", "-8"],
    ],
    ["JUDGE_GUARD_PRICES", '{"acme-judge-1": 3}', ['"acme-judge-1"']],
    ["JUDGE_GUARD_PRICES", "[1, 2]", ["JSON object"]],
    ["JUDGE_GUARD_MAX_WORD_DIFFERENCE", "-1", ['"-1"', ">= 0"]],
    ["JUDGE_GUARD_MAX_WORD_DIFFERENCE", "2.5", ['"2.5"', "whole number"]],
    ["JUDGE_GUARD_MAX_RELATIVE_DIFFERENCE", "1.5", ['"1.5"', "from 0 to 1"]],
    ["JUDGE_GUARD_MAX_RELATIVE_DIFFERENCE", "20%", ['"20%"', "from 0 to 1"]],
    ["JUDGE_GUARD_MAX_RELATIVE_DIFFERENCE", "-0.1", ['"-0.1"']],
    ["JUDGE_GUARD_MAX_NUMBER_DIFFERENCE", "many", ['"many"', ">= 0"]],
    ["JUDGE_GUARD_DEFAULT_OUTPUT_TOKENS", "0", ['"0"', ">= 1"]],
    ["JUDGE_GUARD_DEFAULT_MAX_TOKENS", "4k", ['"4k"', ">= 1"]],
    ["JUDGE_GUARD_CHARS_PER_TOKEN", "0", ['"0"', "> 0"]],
    ["JUDGE_GUARD_CHARS_PER_TOKEN", "Infinity", ['"Infinity"', "> 0"]],
    ["JUDGE_GUARD_PROMPT_OVERHEAD_TOKENS", "0", ['"0"', ">= 1"]],
  ])("%s=%s", (name, value, mentions) => {
    const e = configErrorOf({ [name]: value });
    expect(e.setting).toBe(name);
    expect(e.code).toBe("CONFIG_INVALID");
    expect(isJudgeGuardError(e)).toBe(true);
    expect(e.message).toContain(name);
    for (const m of mentions) expect(e.message).toContain(m);
  });

  it.each(["/nonexistent/canned.txt", "session busy", "^please hold"])(
    "JUDGE_GUARD_CANNED_PATTERNS=%s (no file, no JSON array) says how to give patterns inline",
    (value) => {
      const e = configErrorOf({ JUDGE_GUARD_CANNED_PATTERNS: value });
      expect(e.message).toContain(value);
      expect(e.message).toMatch(/\(to give patterns inline, use a JSON array such as \["session busy"\]\)$/);
    },
  );

  it("JUDGE_GUARD_PRICES inline: an error names the variable, not a file", () => {
    const e = configErrorOf({ JUDGE_GUARD_PRICES: '{"acme-judge-1": {"input": 2}}' });
    expect(e.setting).toBe("JUDGE_GUARD_PRICES");
    expect(e.message).toMatch(/^JUDGE_GUARD_PRICES\b/);
    expect(e.message).not.toContain("file");
  });

  it("an unreadable patterns path (a folder) names the variable and the path", () => {
    const dir = tempDir();
    const e = configErrorOf({ JUDGE_GUARD_CANNED_PATTERNS: dir });
    expect(e.message).toContain("JUDGE_GUARD_CANNED_PATTERNS");
    expect(e.message).toContain(dir);
  });

  it("an invalid regular expression in a patterns file names the variable, the file and the pattern", () => {
    const path = file("canned.txt", "# bounces\nstill working\n[unclosed\n");
    const e = configErrorOf({ JUDGE_GUARD_CANNED_PATTERNS: path });
    expect(e.setting).toBe("JUDGE_GUARD_CANNED_PATTERNS");
    for (const m of ["JUDGE_GUARD_CANNED_PATTERNS", path, '"[unclosed"', "regular expression"]) {
      expect(e.message).toContain(m);
    }
  });

  // [file content, what the message must mention besides the variable and the file]
  it.each<[string, string, string[]]>([
    ["not JSON", '{"claude-sonnet-4-6": {"input": 3,', ["not valid JSON"]],
    ["an array", "[1, 2]", ["JSON object"]],
    ["a model that is not an object", '{"acme-judge-1": 3}', ['"acme-judge-1"']],
    ["a missing output price", '{"acme-judge-1": {"input": 3}}', ['"acme-judge-1"', '"output"']],
    [
      "a negative input price",
      '{"acme-judge-1": {"input": -3, "output": 15}}',
      ['"acme-judge-1"', "input", "-3"],
    ],
    [
      "a price given as a string",
      '{"claude-haiku-4-5": {"input": 1, "output": "5"}}',
      ['"claude-haiku-4-5"', "output", '"5"'],
    ],
    [
      "a misspelt field",
      '{"acme-judge-1": {"input": 1, "output": 5, "cache_read": 0.1}}',
      ['"acme-judge-1"', '"cache_read"'],
    ],
  ])("a price file with %s names the variable, the file, the model and the field", (_n, text, mentions) => {
    const path = file("prices.json", text);
    const e = configErrorOf({ JUDGE_GUARD_PRICES: path });
    expect(e.setting).toBe("JUDGE_GUARD_PRICES");
    for (const m of ["JUDGE_GUARD_PRICES", path, ...mentions]) expect(e.message).toContain(m);
  });

  it.each<[string, Record<string, string>, GuardOptions, string]>([
    [
      "both variables",
      { JUDGE_GUARD_REPEAT_THRESHOLD: "3", JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD: "5" },
      {},
      'JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD="5" is not valid: expected at most JUDGE_GUARD_REPEAT_THRESHOLD (3)',
    ],
    [
      "the variable of a threshold left at its default",
      { JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD: "4" },
      {},
      'JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD="4" is not valid: expected at most JUDGE_GUARD_REPEAT_THRESHOLD (3)',
    ],
    [
      "the option of a threshold given in code",
      { JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD: "3" },
      { repeatThreshold: 2 },
      'JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD="3" is not valid: expected at most repeatThreshold (2)',
    ],
  ])("a known-repeat threshold above the repeat threshold names %s", (_n, env, overrides, message) => {
    let error: unknown;
    try {
      fromEnv(env, overrides);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe("JUDGE_GUARD_KNOWN_REPEAT_THRESHOLD");
    expect((error as ConfigError).message).toBe(message);
  });

  it("reports the first invalid variable even when others are valid", () => {
    const e = configErrorOf({ JUDGE_GUARD_MODE: "shadow", JUDGE_GUARD_CONCURRENCY: "-1" });
    expect(e.setting).toBe("JUDGE_GUARD_CONCURRENCY");
  });

  // Number() would also read hexadecimal, binary and octal literals.
  it("rejects a budget written in hexadecimal", () => {
    configErrorOf({ JUDGE_GUARD_SESSION_BUDGET_USD: "0x10" });
  });
});

describe("createGuard honours fromEnv options", () => {
  const UNKNOWN_CANNED = "Sorry, I am unable to process requests right now. Try again later.";
  const users = ["deploy the api", "now prod", "hello?", "are you there", "???", "status", "ping"];

  /**
   * One healthy turn, then the same reply to every later message, one judge call per turn on the
   * whole transcript (as Phantom does). Returns each turn's status ("judged" or the skip reason).
   */
  async function play(
    env: Record<string, string>,
    canned: string | readonly string[],
    extra: GuardOptions = {},
  ) {
    const cannedAt = (i: number) => (typeof canned === "string" ? canned : canned[i % canned.length]!);
    const guard = createGuard(
      fromEnv(env, { ledger: ":memory:", logger: "silent", verdictTtlMs: 0, ...extra }),
    );
    const replies = [
      "Deployed version 4 to staging; smoke tests pass.",
      ...users.slice(1).map((_, i) => cannedAt(i)),
    ];
    const statuses: string[] = [];
    try {
      for (let i = 0; i < users.length; i++) {
        const outcome = await guard.run(
          {
            judge: "observation_extraction",
            model: "claude-sonnet-4-6",
            sessionKey: "cli:cli:local",
            userMessages: users.slice(0, i + 1),
            assistantMessages: replies.slice(0, i + 1),
          },
          async () => ({ inputTokens: 1000, outputTokens: 300 }),
        );
        statuses.push(
          outcome.status === "skipped"
            ? outcome.reason
            : outcome.status === "judged" && outcome.shadowReason
              ? `judged (would skip: ${outcome.shadowReason})`
              : outcome.status,
        );
      }
    } finally {
      await guard.close();
    }
    return statuses;
  }

  const J = "judged";
  const S = "stuck_session";
  const NEAR_DUPLICATES = [UNKNOWN_CANNED, UNKNOWN_CANNED.replace("later", "in a few minutes")];
  it.each<[string, Record<string, string>, string | readonly string[], string[]]>([
    [
      "an unknown canned line is skipped from its 3rd repeat by default",
      {},
      UNKNOWN_CANNED,
      [J, J, J, S, S, S, S],
    ],
    [
      "JUDGE_GUARD_REPEAT_THRESHOLD=4 waits for the 4th repeat",
      { JUDGE_GUARD_REPEAT_THRESHOLD: "4" },
      UNKNOWN_CANNED,
      [J, J, J, J, S, S, S],
    ],
    [
      "JUDGE_GUARD_CANNED_PATTERNS makes it known: skipped from its 2nd repeat",
      { JUDGE_GUARD_CANNED_PATTERNS: '["unable to process requests"]' },
      UNKNOWN_CANNED,
      [J, J, S, S, S, S, S],
    ],
    ["Phantom's canned line is known by default", {}, CANNED, [J, J, S, S, S, S, S]],
    [
      "near-duplicates of an unknown line are one reply by default",
      {},
      NEAR_DUPLICATES,
      [J, J, J, S, S, S, S],
    ],
    [
      "two wordings of one line count as one reply: the 3rd reply is skipped",
      {},
      NEAR_DUPLICATES,
      [J, J, J, S, S, S, S],
    ],
    [
      "JUDGE_GUARD_MAX_WORD_DIFFERENCE=0 makes them two lines, skipped once each recurs (A/B/A/B)",
      { JUDGE_GUARD_MAX_WORD_DIFFERENCE: "0" },
      NEAR_DUPLICATES,
      [J, J, J, J, S, S, S],
    ],
    [
      "JUDGE_GUARD_BUILTIN_PATTERNS=false forgets Phantom's line",
      { JUDGE_GUARD_BUILTIN_PATTERNS: "false" },
      CANNED,
      [J, J, J, S, S, S, S],
    ],
    [
      "JUDGE_GUARD_MODE=shadow judges everything and says what it would skip",
      { JUDGE_GUARD_MODE: "shadow" },
      CANNED,
      [J, J, ...Array(5).fill(`judged (would skip: ${S})`)],
    ],
    [
      "JUDGE_GUARD_SESSION_MAX_CALLS=2 stops the key after two calls",
      { JUDGE_GUARD_SESSION_MAX_CALLS: "2" },
      UNKNOWN_CANNED,
      [J, J, "session_calls", S, S, S, S],
    ],
  ])("%s", async (_name, env, canned, expected) => {
    expect(await play(env, canned)).toEqual(expected);
  });

  it("JUDGE_GUARD_PRICES sets what a judged call is charged", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "conf"));
    const path = join(dir, "conf", "prices.json");
    writeFileSync(path, JSON.stringify({ "acme-judge-1": { input: 2, output: 10 } }));
    const guard = createGuard(
      fromEnv({ JUDGE_GUARD_PRICES: path }, { ledger: ":memory:", logger: "silent" }),
    );
    try {
      const outcome = await guard.run(
        {
          judge: "quality_assessment",
          model: "acme-judge-1",
          sessionKey: "slack:C1:1",
          userMessages: ["hi"],
          assistantMessages: ["Hello! What are we working on today?"],
        },
        async () => ({ inputTokens: 1_000_000, outputTokens: 100_000 }),
      );
      expect(outcome.status).toBe("judged");
      if (outcome.status === "judged") expect(outcome.costUsd).toBeCloseTo(2 + 1, 6);
    } finally {
      await guard.close();
    }
  });

  it("JUDGE_GUARD_SESSION_BUDGET_USD=none lifts the per-key cap", async () => {
    const guard = createGuard(
      fromEnv({ JUDGE_GUARD_SESSION_BUDGET_USD: "none" }, { ledger: ":memory:", logger: "silent" }),
    );
    try {
      expect(guard.session("k").budgetUsd).toBe(Infinity);
    } finally {
      await guard.close();
    }
  });
});
