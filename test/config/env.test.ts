import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  ConfigError,
  createGuard,
  DEFAULT_PRICES,
  DEFAULTS,
  ENV_VARIABLES,
  fromEnv,
  type GuardOptions,
  isJudgeGuardError,
} from "../../src/index.js";
import { useTempDir } from "../helpers/tmp.js";

const tempDir = useTempDir();

/** Writes `text` to a fresh temporary file and returns its path. */
function file(name: string, text: string): string {
  const path = join(tempDir(), name);
  writeFileSync(path, text);
  return path;
}

/** Calls `fromEnv` and returns the ConfigError it throws (fails the test when it does not). */
function configErrorOf(env: Record<string, string>): ConfigError {
  try {
    fromEnv(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error(`fromEnv(${JSON.stringify(env)}) did not throw`);
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
    JUDGE_GUARD_SESSION_BUDGET_USD: ["2.5", 2.5],
    JUDGE_GUARD_SESSION_MAX_CALLS: ["200", 200],
    JUDGE_GUARD_BUDGET_WINDOW: ["7d", 7 * 86_400_000],
    JUDGE_GUARD_DAILY_BUDGET_USD: ["0.50", 0.5],
    JUDGE_GUARD_CONCURRENCY: ["2", 2],
    JUDGE_GUARD_PRICES: ["(written per test)", undefined],
    JUDGE_GUARD_SIGNAL_COOLDOWN: ["90s", 90_000],
    JUDGE_GUARD_VERDICT_TTL: ["0", 0],
    JUDGE_GUARD_VERDICT_CACHE_SIZE: ["50", 50],
    JUDGE_GUARD_MAX_SESSIONS: ["100", 100],
    JUDGE_GUARD_ADMISSION_WAIT: ["2m", 120_000],
    JUDGE_GUARD_LEASE: ["1m", 60_000],
    JUDGE_GUARD_LOG_LEVEL: ["debug", "debug"],
  };

  it("has a sample for every documented variable", () => {
    expect(Object.keys(samples).sort()).toEqual(ENV_VARIABLES.map((v) => v.name).sort());
  });

  it.each(ENV_VARIABLES.filter((v) => v.name !== "JUDGE_GUARD_PRICES").map((v) => [v.name, v.option]))(
    "%s sets %s",
    (name, option) => {
      const [raw, expected] = samples[name]!;
      expect(fromEnv({ [name]: raw })).toEqual({ [option]: expected });
    },
  );

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

  it("documents defaults that are the guard's defaults", () => {
    const withDefault = ENV_VARIABLES.filter((v) => v.option in DEFAULTS);
    expect(withDefault.length).toBeGreaterThan(10);
    for (const v of withDefault) {
      expect(fromEnv({ [v.name]: v.defaultText })[v.option], v.name).toBe(
        DEFAULTS[v.option as keyof typeof DEFAULTS],
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
    ["250", 250],
    ["10M", 600_000],
  ])("duration %s is %d ms", (raw, ms) => {
    expect(fromEnv({ JUDGE_GUARD_SIGNAL_COOLDOWN: raw })).toEqual({ signalCooldownMs: ms });
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
  ])("%s=%s", (name, value, mentions) => {
    const e = configErrorOf({ [name]: value });
    expect(e.setting).toBe(name);
    expect(e.code).toBe("CONFIG_INVALID");
    expect(isJudgeGuardError(e)).toBe(true);
    expect(e.message).toContain(name);
    for (const m of mentions) expect(e.message).toContain(m);
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
  const PHANTOM_CANNED = "I'm still working on your previous message. Please wait.";
  const users = ["deploy the api", "now prod", "hello?", "are you there", "???", "status", "ping"];

  /**
   * One healthy turn, then the same reply to every later message, one judge call per turn on the
   * whole transcript (as Phantom does). Returns each turn's status ("judged" or the skip reason).
   */
  async function play(env: Record<string, string>, canned: string, extra: GuardOptions = {}) {
    const guard = createGuard(
      fromEnv(env, { ledger: ":memory:", logger: "silent", verdictTtlMs: 0, ...extra }),
    );
    const replies = ["Deployed version 4 to staging; smoke tests pass.", ...users.slice(1).map(() => canned)];
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
  it.each<[string, Record<string, string>, string, string[]]>([
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
    ["Phantom's canned line is known by default", {}, PHANTOM_CANNED, [J, J, S, S, S, S, S]],
    [
      "JUDGE_GUARD_BUILTIN_PATTERNS=false forgets Phantom's line",
      { JUDGE_GUARD_BUILTIN_PATTERNS: "false" },
      PHANTOM_CANNED,
      [J, J, J, S, S, S, S],
    ],
    [
      "JUDGE_GUARD_MODE=shadow judges everything and says what it would skip",
      { JUDGE_GUARD_MODE: "shadow" },
      PHANTOM_CANNED,
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
