import { describe, expect, it } from "vitest";
import { redactIn, redactUrl } from "../../src/store/postgres-connection.js";

/**
 * A PostgreSQL URL is shown in logs, errors and reports with its password hidden, whatever the
 * password holds: one written with an unencoded "/", "#" or "@" used to be parsed as part of the
 * host or the path, and shown.
 */
describe("a PostgreSQL URL as judge-guard shows it", () => {
  it.each([
    ["postgres://jg:s3cret@db:5432/jg", "postgres://jg:***@db:5432/jg", "s3cret"],
    ["postgres://jg:s3cr%2Fet@db/jg", "postgres://jg:***@db/jg", "s3cr/et"],
    ["postgres://jg2:p@ss/w#rd@127.0.0.1:56015/db", "postgres://jg2:***@127.0.0.1:56015/db", "p@ss/w#rd"],
    ["postgres://jg:a?b@db/jg", "postgres://jg:***@db/jg", "a?b"],
    [
      "postgres://jg:pw@db/jg?sslmode=require&password=xyzzy1",
      "postgres://jg:***@db/jg?sslmode=require&password=***",
      "xyzzy1",
    ],
  ])("%s -> %s", (url, shown, secret) => {
    expect(redactUrl(url)).toBe(shown);
    const message = redactIn(`could not connect to ${url}: password "${secret}" refused`, url);
    expect(message).not.toContain(secret);
    expect(message).toContain(shown);
  });

  it("keeps a URL without a password as it is", () => {
    expect(redactUrl("postgres://jg@db/jg")).toBe("postgres://jg@db/jg");
    expect(redactUrl("postgres://db/jg")).toBe("postgres://db/jg");
    expect(redactIn("the server at postgres://db/jg is down", "postgres://db/jg")).toBe(
      "the server at postgres://db/jg is down",
    );
  });
});
