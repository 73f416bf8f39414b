import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { withVariablesTable } from "../../scripts/readme-env.mjs";
import { DOCUMENTED_VARIABLES } from "../../src/index.js";

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

describe("README", () => {
  it("has the table of variables written from their definitions (run npm run docs after changing one)", () => {
    expect(readme).toBe(withVariablesTable(readme, DOCUMENTED_VARIABLES));
  });

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
