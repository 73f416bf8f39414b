// Runs every benchmark scenario in this folder, in order, and prints one table each.
// `--json FILE` also writes the results with machine information. `--only NAME,...` picks
// scenarios by file name.
import { writeFileSync } from "node:fs";
import { machine } from "./lib.mjs";

const SCENARIOS = [
  "decision-overhead",
  "session-growth",
  "fingerprint-throughput",
  "ledger-throughput",
  "contention",
  "incident-savings",
  "report-scale",
  "sidecar",
  "detection-quality",
  "postgres-throughput",
  "postgres-overhead",
];

const args = process.argv.slice(2);
const jsonAt = args.indexOf("--json");
const jsonFile = jsonAt >= 0 ? args[jsonAt + 1] : undefined;
const onlyAt = args.indexOf("--only");
const only = onlyAt >= 0 ? args[onlyAt + 1].split(",") : SCENARIOS;

const info = machine();
console.log(
  `judge-guard benchmarks on ${info.cpu} (${info.cores} cores, ${info.memoryGiB} GiB), Node ${info.node}`,
);
const results = {};
for (const name of SCENARIOS.filter((s) => only.includes(s))) {
  const { run } = await import(`./${name}.mjs`);
  results[name] = await run();
}
if (jsonFile) {
  writeFileSync(
    jsonFile,
    `${JSON.stringify({ machine: info, date: new Date().toISOString(), results }, null, 2)}\n`,
  );
  console.log(`\nresults written to ${jsonFile}`);
}
