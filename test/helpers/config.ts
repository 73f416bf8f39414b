import { expect } from "vitest";
import { ConfigError, fromEnv } from "../../src/index.js";

/** Calls `fromEnv` and returns the ConfigError it throws (fails the test when it does not). */
export function configErrorOf(env: Record<string, string>): ConfigError {
  try {
    fromEnv(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error(`fromEnv(${JSON.stringify(env)}) did not throw`);
}
