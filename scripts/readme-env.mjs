// The README's table of environment variables, generated from their definitions
// (src/config/variables.ts, whose defaults and limits are the options table's), so that no default
// or meaning is written twice. `npm run docs` rewrites the table; test/docs/readme.test.ts fails
// while the README differs from what this writes.
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

export const BEGIN = "<!-- variables: generated from src/config/variables.ts by npm run docs -->";
export const END = "<!-- /variables -->";

/** One Markdown table: a row a variable, its default as text, what it means. */
export function variablesTable(variables) {
  return [
    "| variable | default | meaning |",
    "| --- | --- | --- |",
    ...variables.map((v) => `| \`${v.name}\` | \`${v.defaultText}\` | ${v.doc} |`),
  ].join("\n");
}

/** `readme` with the table between its markers written from `variables`. */
export function withVariablesTable(readme, variables) {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`the README has no ${BEGIN} ... ${END} block`);
  return `${readme.slice(0, start + BEGIN.length)}\n${variablesTable(variables)}\n${readme.slice(end)}`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { DOCUMENTED_VARIABLES } = await import("../dist/index.js");
  const path = new URL("../README.md", import.meta.url);
  const before = readFileSync(path, "utf8");
  const after = withVariablesTable(before, DOCUMENTED_VARIABLES);
  if (after !== before) writeFileSync(path, after);
  console.log(
    after === before
      ? "README.md: the table of variables is up to date"
      : "README.md: table of variables written",
  );
}
