/**
 * `judge-guard/phantom/preload`: guards a Phantom process with no change to Phantom's source.
 * Bun loads it before Phantom's entry point:
 *
 *   BUN_OPTIONS="--preload=/opt/judge-guard/dist/adapters/phantom-preload.js" bun run src/index.ts
 *
 * It reaches the sidecar (`judge-guard serve`) at JUDGE_GUARD_URL with JUDGE_GUARD_TOKEN, and
 * installs the guard into Phantom's classes (see phantom-install.ts). JUDGE_GUARD_PHANTOM_ROOT
 * names Phantom's folder when it is not the working directory. A misconfiguration stops
 * Phantom's start with one line saying what to set: a guard that silently guards nothing is
 * worse than none.
 */
import { createClient } from "../client/client.js";
import { checkVariableNames } from "../config/variables.js";
import { parseDuration } from "../guard/option-kinds.js";
import { installPhantomGuard } from "./phantom-install.js";

function fail(message: string): never {
  console.error(`judge-guard: ${message}`);
  process.exit(2);
}

const env = process.env;
// Phantom passes its environment to the Agent SDK's subprocesses (Claude Code, run by Bun): they
// must not load this preload too (the reflection's runs from phantom-config, not Phantom's folder).
delete env.BUN_OPTIONS;
try {
  checkVariableNames(env);
} catch (e) {
  fail((e as Error).message);
}
const url = env.JUDGE_GUARD_URL;
if (url === undefined || url === "") {
  fail(
    "JUDGE_GUARD_URL is not set: give the sidecar's address, e.g. JUDGE_GUARD_URL=http://judge-guard:8787",
  );
}
let client: ReturnType<typeof createClient>;
try {
  client = createClient({ url, ...(env.JUDGE_GUARD_TOKEN && { token: env.JUDGE_GUARD_TOKEN }) });
} catch (e) {
  fail(`JUDGE_GUARD_URL: ${(e as Error).message}`);
}
const recover = env.JUDGE_GUARD_PHANTOM_RECOVER ?? "on";
if (recover !== "on" && recover !== "off") {
  fail(`JUDGE_GUARD_PHANTOM_RECOVER must be on or off, got ${JSON.stringify(recover)}`);
}
let releaseAfterMs: number | undefined;
try {
  const v = env.JUDGE_GUARD_PHANTOM_RELEASE_AFTER;
  if (v !== undefined && v !== "") releaseAfterMs = parseDuration(v, "JUDGE_GUARD_PHANTOM_RELEASE_AFTER");
} catch (e) {
  fail((e as Error).message);
}
try {
  await installPhantomGuard(client, {
    ...(releaseAfterMs !== undefined && { releaseAfterMs }),
    ...(env.JUDGE_GUARD_PHANTOM_ROOT && { root: env.JUDGE_GUARD_PHANTOM_ROOT }),
    recover: recover === "on",
  });
} catch (e) {
  fail((e as Error).message);
}
