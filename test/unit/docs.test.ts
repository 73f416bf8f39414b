import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ENV_VARIABLES, SIGNAL_VARIABLES } from "../../src/index.js";

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

describe("README", () => {
  it.each([...ENV_VARIABLES, ...SIGNAL_VARIABLES].map((v) => [v.name, v] as const))(
    "documents %s with its default",
    (_name, v) => {
      const row = new RegExp(
        `\\|\\s*\`${v.name}\`\\s*\\|\\s*\`${v.defaultText.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\`\\s*\\|`,
      );
      expect(readme).toMatch(row);
    },
  );

  it("starts with the install-and-replay command and the test command", () => {
    const firstBlock = readme.slice(
      readme.indexOf("```sh"),
      readme.indexOf("```", readme.indexOf("```sh") + 5),
    );
    expect(firstBlock).toContain(
      "npm ci && npm run build && node dist/cli/main.js replay examples/phantom-incident.jsonl.gz",
    );
    expect(firstBlock).toContain("npm test");
  });
});
