// One of the processes of the shared-ledger case in ledger-throughput.mjs (and of the fleet case
// in postgres-throughput.mjs, which gives the ledger as BENCH_LEDGER: its URL holds a password).
import { createGuard } from "../dist/index.js";
import { UNCAPPED } from "./lib.mjs";

const [path, calls, id] = process.argv.slice(2);
const guard = createGuard({
  ledger: path === "-" ? process.env.BENCH_LEDGER : path,
  logger: "silent",
  ...UNCAPPED,
  verdictTtlMs: 0,
});
const noop = async () => ({ inputTokens: 1200, outputTokens: 300 });
for (let i = 0; i < Number(calls); i++) {
  await guard.run(
    {
      judge: "observation_extraction",
      model: "claude-sonnet-4-6",
      sessionKey: `p${id}-k${i % 25}`,
      userMessages: [`q${i}`],
      assistantMessages: [`answer ${i} with enough substance`],
    },
    noop,
  );
}
await guard.close();
