import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { ConfigError, isPhantomDbError } from "../errors.js";
import {
  type GuardOptions,
  OPTION_RULES,
  OPTIONS,
  type OptionPath,
  optionAt,
  resolveOptions,
} from "../guard/options.js";
import { phantomSqliteSink } from "../signals/phantom-sqlite.js";
import type { SignalSink } from "../signals/types.js";
import { webhookProblem, webhookSink } from "../signals/webhook.js";
import { sqliteUnavailable } from "../store/driver.js";
import { openPhantomDb } from "../store/phantom.js";
import { checkVariableNames, ENV_VARIABLES, VARIABLE_OF } from "./variables.js";

type Env = Readonly<Record<string, string | undefined>>;

/** Sets `path` in `options` (a plain object being built), copying a nested object it changes. */
function setOption(options: Record<string, unknown>, path: OptionPath, value: unknown): void {
  const [head, field] = path.split(".", 2) as [string, string | undefined];
  if (field === undefined) options[head] = value;
  else options[head] = { ...(options[head] as object | undefined), [field]: value };
}

/** The options with fields of their own: `overrides` of them win field by field. */
const NESTED = [...new Set(Object.keys(OPTIONS).flatMap((p) => (p.includes(".") ? [p.split(".")[0]!] : [])))];

const CHANNELS = ["none", "callback", "phantom-sqlite", "webhook"] as const;

/**
 * At start-up, not at the first stuck session: JUDGE_GUARD_PHANTOM_DB must be Phantom's database
 * now. (The sink itself, made in code, treats a missing file as a failed delivery, retried.)
 */
function checkPhantomDb(path: string): void {
  const bad = (why: string): never => {
    throw new ConfigError(
      "JUDGE_GUARD_PHANTOM_DB",
      `JUDGE_GUARD_PHANTOM_DB=${JSON.stringify(path)} (for JUDGE_GUARD_SIGNAL=phantom-sqlite) ${why}`,
    );
  };
  if (!existsSync(path)) {
    bad(
      existsSync(dirname(resolve(path)))
        ? "does not exist: give the path of Phantom's data/phantom.db. Phantom creates it at its first start: start Phantom once, or leave phantom-sqlite out of JUDGE_GUARD_SIGNAL until it has"
        : `does not exist, nor does its folder ${dirname(resolve(path))}: give the path of Phantom's data/phantom.db, as this process sees it`,
    );
  }
  if (statSync(path).isDirectory()) bad("is a folder: give the path of Phantom's data/phantom.db");
  try {
    openPhantomDb(path).close();
  } catch (e) {
    bad(`cannot be used: ${isPhantomDbError(e) ? e.problem : (e as Error).message}`);
  }
}

/** The sinks JUDGE_GUARD_SIGNAL asks for; `callback` must come from code (`overrides.signals`). */
function sinksFromEnv(env: Env, fromCode: readonly SignalSink[] | undefined): SignalSink[] | undefined {
  const raw = env.JUDGE_GUARD_SIGNAL?.trim();
  if (!raw) return fromCode === undefined ? undefined : [...fromCode];
  const channels = raw.split(",").map((c) => c.trim().toLowerCase());
  for (const c of channels) {
    if (!(CHANNELS as readonly string[]).includes(c))
      throw ConfigError.variable(
        "JUDGE_GUARD_SIGNAL",
        raw,
        `a comma-separated list of ${CHANNELS.join(", ")}`,
      );
  }
  if (channels.includes("none") && channels.length > 1)
    throw ConfigError.variable("JUDGE_GUARD_SIGNAL", raw, '"none" alone, or a list of channels');
  const sinks: SignalSink[] = [];
  const need = (name: string, channel: string): string => {
    const v = env[name]?.trim();
    if (!v) throw new ConfigError(name, `JUDGE_GUARD_SIGNAL includes ${channel}, which needs ${name}`);
    return v;
  };
  if (channels.includes("phantom-sqlite")) {
    const unavailable = sqliteUnavailable();
    if (unavailable !== undefined) {
      throw new ConfigError(
        "JUDGE_GUARD_SIGNAL",
        `JUDGE_GUARD_SIGNAL includes phantom-sqlite, which needs ${unavailable}: use callback in process, or set it on the judge-guard sidecar`,
      );
    }
    const path = need("JUDGE_GUARD_PHANTOM_DB", "phantom-sqlite");
    checkPhantomDb(path);
    sinks.push(phantomSqliteSink({ path }));
  }
  if (channels.includes("webhook")) {
    const url = need("JUDGE_GUARD_WEBHOOK_URL", "webhook");
    const secret = need("JUDGE_GUARD_WEBHOOK_SECRET", "webhook");
    const problem = webhookProblem(url, secret);
    if (problem !== undefined) {
      const variable = problem.option === "url" ? "JUDGE_GUARD_WEBHOOK_URL" : "JUDGE_GUARD_WEBHOOK_SECRET";
      // Never echo the secret.
      throw ConfigError.variable(variable, problem.option === "url" ? url : undefined, problem.expected);
    }
    sinks.push(webhookSink({ url, secret }));
  }
  if (channels.includes("callback") && (fromCode === undefined || fromCode.length === 0)) {
    throw new ConfigError(
      "JUDGE_GUARD_SIGNAL",
      "JUDGE_GUARD_SIGNAL includes callback, which needs the function from code: createGuard(fromEnv(process.env, { signals: [callbackSink(fn)] }))",
    );
  }
  return [...sinks, ...(fromCode ?? [])];
}

/**
 * Builds guard options from environment variables (default `process.env`). An invalid value,
 * or a `JUDGE_GUARD_*` variable it does not know ({@link checkVariableNames}), throws a
 * `ConfigError` naming the variable, the value and what is allowed. `overrides` win;
 * in `similarity` and `estimator`, field by field. Signal sinks passed in `overrides.signals`
 * always apply, added to the channels JUDGE_GUARD_SIGNAL names (even with `none`).
 */
export function fromEnv(env: Env = process.env, overrides: GuardOptions = {}): GuardOptions {
  checkVariableNames(env);
  const options: Record<string, unknown> = {};
  /** The variables that set an option, with their text, by the option's path. */
  const given = new Map<OptionPath, { name: string; text: string }>();
  for (const v of ENV_VARIABLES) {
    const text = env[v.name]?.trim();
    if (!text) continue;
    setOption(options, v.option, v.parse(text));
    given.set(v.option, { name: v.name, text });
  }
  const result: Record<string, unknown> = { ...options, ...overrides };
  const signals = sinksFromEnv(env, overrides.signals);
  if (signals !== undefined) result.signals = signals;
  for (const key of NESTED) {
    const fromOverrides = (overrides as Record<string, unknown>)[key];
    if (options[key] !== undefined && fromOverrides !== null && typeof fromOverrides === "object")
      result[key] = { ...(options[key] as object), ...fromOverrides };
  }
  // Each value is valid alone; the rules between options name the variables, unless an override
  // set the option (then createGuard's own check names the option).
  const overridden = (path: OptionPath) => optionAt(overrides, path) !== undefined;
  for (const rule of OPTION_RULES) {
    const variable = given.get(rule.option);
    if (variable === undefined || overridden(rule.option)) continue;
    const problem = rule.problem(
      (path) => optionAt(result as GuardOptions, path) ?? OPTIONS[path].default,
      (path) => (overridden(path) ? path : (VARIABLE_OF.get(path) ?? path)),
    );
    if (problem !== undefined) throw ConfigError.variable(variable.name, variable.text, problem);
  }
  // What the overrides give is checked as options given in code, naming the option.
  resolveOptions(result as GuardOptions);
  return result as GuardOptions;
}
