#!/usr/bin/env node
// Generates examples/phantom-incident.jsonl.gz (a recorded judge-traffic file shaped like
// Phantom issue #25) and examples/small.jsonl (a tiny plain-text sample with two bad lines).
//
// Deterministic: a seeded mulberry32 PRNG, fixed clock. No dependencies, node: built-ins only.
//
//   node examples/generate-incident.mjs
//
// Each line: {"ts", "judge", "model", "session": <Phantom SessionSummary>, "usage": {...}}.
// See examples/README.md for the story and the line numbers of note.

import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { makeRng as makeSharedRng } from "../scripts/rng.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));

const CANNED = "I'm still working on your previous message. Please wait.";
const SONNET = "claude-sonnet-4-6";
const HAIKU = "claude-haiku-4-5";
const T0 = Date.UTC(2026, 10, 20, 8, 0, 0); // 2026-11-20T08:00:00Z
const MIN = 60_000;
const SEC = 1000;

// ---------------------------------------------------------------------------------------------
// PRNG and helpers
// ---------------------------------------------------------------------------------------------

function makeRng(seed) {
  const base = makeSharedRng(seed);
  const r = {
    ...base,
    sha: () => r.hex(7),
    pr: () => r.int(4100, 4980),
    ver: () => `${r.int(1, 4)}.${r.int(0, 24)}.${r.int(0, 12)}`,
  };
  return r;
}

const iso = (ms) => new Date(ms).toISOString();
const round6 = (x) => Math.round(x * 1e6) / 1e6;

// ---------------------------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------------------------

const SERVICES = [
  "billing-api",
  "auth-gateway",
  "ingest-worker",
  "search-indexer",
  "notifications",
  "web-frontend",
  "payments-reconciler",
  "export-service",
  "ledger-sync",
  "webhook-relay",
];
const ENVS = ["staging", "prod-eu", "prod-us", "canary"];
const PEOPLE = ["Priya", "Marco", "Jun", "Aisha", "Tomás", "Lena", "Ravi", "Sofia", "Dmitri", "Kemi"];
const BRANCHES = [
  "main",
  "feat/invoice-currency",
  "fix/session-refresh",
  "chore/node-20-upgrade",
  "feat/export-v2",
  "fix/webhook-backoff",
];
const TESTS = [
  ["test/billing/invoice.test.ts", "rounds totals half-even per line item"],
  ["test/billing/proration.test.ts", "prorates a mid-cycle plan downgrade"],
  ["test/auth/session-store.test.ts", "refreshes a session that expires during the request"],
  ["test/auth/oauth-callback.test.ts", "rejects a callback with a mismatched state"],
  ["test/ingest/batcher.test.ts", "flushes the pending batch on SIGTERM"],
  ["test/search/reindex.test.ts", "reindexes documents after a mapping change"],
  ["test/webhooks/retry.test.ts", "backs off with jitter after a 503"],
  ["test/export/csv.test.ts", "escapes embedded quotes and newlines"],
  ["test/ledger/reconcile.test.ts", "balances the ledger after a partial refund"],
  ["test/notify/digest.test.ts", "groups notifications by recipient timezone"],
];
const FILES = [
  "src/billing/invoice.ts",
  "src/billing/proration.ts",
  "src/auth/session-store.ts",
  "src/auth/oauth/callback.ts",
  "src/ingest/batcher.ts",
  "src/ingest/s3-reader.ts",
  "src/search/indexer.ts",
  "src/notify/digest.ts",
  "src/web/pages/settings.tsx",
  "src/ledger/reconcile.ts",
  "src/webhooks/retry.ts",
  "src/lib/http/client.ts",
  "src/db/migrations/0042_add_invoice_currency.sql",
  "infra/k8s/billing-api/deployment.yaml",
  "infra/terraform/rds.tf",
  ".github/workflows/ci.yml",
];
const SRC_FILES = FILES.filter((f) => f.startsWith("src/") && f.endsWith(".ts"));
const ERRORS = [
  "TypeError: Cannot read properties of undefined (reading 'accountId')",
  "Error: read ECONNRESET",
  'duplicate key value violates unique constraint "invoices_pkey"',
  "deadlock detected",
  "Error: timeout of 30000ms exceeded",
  "AxiosError: Request failed with status code 429",
  "RangeError: Invalid time value",
  "SequelizeConnectionAcquireTimeoutError: Operation timeout",
  "Error [ERR_STREAM_PREMATURE_CLOSE]: Premature close",
  "FATAL: remaining connection slots are reserved for non-replication superuser connections",
];
const DEPS = [
  "pino",
  "zod",
  "undici",
  "pg",
  "ioredis",
  "@aws-sdk/client-s3",
  "vitest",
  "typescript",
  "fastify",
];
const ALERTS = [
  "HighErrorRate",
  "KubePodCrashLooping",
  "QueueDepthHigh",
  "P95LatencyAboveSLO",
  "DiskUsage85Percent",
  "CertificateExpiresSoon",
];
const ENTITIES = ["invoice", "refund", "webhook delivery", "export job", "signup", "password reset"];
const TABLES = {
  invoice: "invoices",
  refund: "refunds",
  "webhook delivery": "webhook_deliveries",
  "export job": "export_jobs",
  signup: "accounts",
  "password reset": "password_resets",
};

// ---------------------------------------------------------------------------------------------
// Healthy exchange templates: (r, ctx) => { user, assistant, files? }
// ---------------------------------------------------------------------------------------------

const svcOf = (r, ctx) => (r.chance(0.6) ? ctx.svc : r.pick(SERVICES));

const CONCEPTS = [
  [
    "idempotency keys on POST /charges",
    "The mobile clients retry on flaky networks, and a retry after a timeout used to create a second charge even though the first one had succeeded server-side. With the Idempotency-Key header we store the response next to the key for 24 hours; a retry with the same key gets the stored response instead of running the handler again. The important detail is that the key row is inserted in the same transaction as the charge, so there is no window where the charge exists and the key doesn't. If you add a new mutating endpoint, wrap it in withIdempotency() and it gets the same behaviour.",
  ],
  [
    "the transactional outbox",
    "We used to publish events to the queue right after committing the database transaction. When the process died between the two steps, the invoice existed but nobody downstream heard about it, and the ledger drifted. Now the handler writes the event into the outbox table inside the same transaction, and a small relay polls that table and publishes in order, marking rows as sent. Delivery is at-least-once, so consumers dedupe on event_id. The relay lag is exported as outbox_relay_lag_seconds; anything above 30 seconds pages.",
  ],
  [
    "WAL mode for the local SQLite cache",
    "In the default rollback-journal mode a writer blocks every reader for the duration of the write. The export worker reads constantly while the sync loop writes in bursts, so we saw SQLITE_BUSY under load. WAL lets readers keep reading the last committed snapshot while one writer appends to the log. Two caveats: it only works when all processes are on the same host (the shared-memory index does not work over NFS), and you still need a busy_timeout because two writers still serialize.",
  ],
  [
    "a circuit breaker around the tax provider",
    "When the tax API degrades it doesn't fail fast, it hangs for 20-30 seconds. Without a breaker every checkout thread ends up waiting on it and the whole service stalls. The breaker opens after 5 failures or timeouts within 30 seconds, fails calls immediately for 60 seconds, then lets a single probe through. While it is open we fall back to the cached rate table for the customer's region and flag the invoice for recalculation, which finance prefers to a failed checkout.",
  ],
  [
    "exponential backoff with full jitter for webhook retries",
    "If every failed delivery retried after exactly 1, 2, 4, 8 seconds, a customer endpoint that came back after an outage would receive all the retries at the same instants and fall over again. Full jitter picks a random delay between zero and the exponential cap, which spreads the retries out. We cap the delay at 15 minutes and give up after 24 hours, then the delivery shows up as failed in the dashboard with a manual retry button.",
  ],
  [
    "PgBouncer in transaction pooling mode",
    "Each pod opens a pool of 10 connections, and with 40 pods during peak we were well past max_connections on the primary. PgBouncer in transaction mode lets hundreds of client connections share about 60 server connections, because a server connection is only held for the duration of a transaction. The catch is that session state does not survive between transactions: no session-level SET, no advisory locks held across statements, and named prepared statements need the driver option we set in src/db/pool.ts.",
  ],
  [
    "percentage rollouts for feature flags",
    "A flag with a percentage rollout hashes the account id together with the flag name, so the same account always lands in the same bucket and gets a consistent experience while we ramp from 1% to 100%. Hashing with the flag name means different flags pick different cohorts, so the same unlucky accounts don't get every experiment. Kill switches skip the hash entirely and flip for everybody within about 10 seconds, which is the cache TTL on the flag client.",
  ],
  [
    "pinning Node 20 in the Docker image",
    "The base image used to float on node:lts, and one rebuild silently moved us to a new major. That changed the default of a fetch option and broke the S3 reader in a way tests didn't catch. Pinning node:20.18-bookworm-slim by digest means a rebuild produces the same runtime, and Renovate opens a PR when a new patch lands, so upgrades are deliberate and go through CI.",
  ],
];

const SCRIPTS = [
  [
    "lists pods that restarted in the last hour across all namespaces",
    "bash",
    `#!/usr/bin/env bash
set -euo pipefail
since=$(date -u -d '1 hour ago' +%s)
kubectl get pods -A -o json | jq -r --argjson since "$since" '
  .items[]
  | .metadata as $m
  | .status.containerStatuses[]?
  | select(.lastState.terminated.finishedAt != null)
  | select((.lastState.terminated.finishedAt | fromdateiso8601) > $since)
  | "\\($m.namespace)/\\($m.name) \\(.name) restarts=\\(.restartCount) reason=\\(.lastState.terminated.reason)"'`,
    "It needs jq 1.6+ and GNU date. On macOS use `gdate` from coreutils or replace the first line with `date -u -v-1H +%s`.",
  ],
  [
    "counts log lines per HTTP status from a JSON Lines access log",
    "js",
    `import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";

const counts = new Map();
const rl = createInterface({ input: createReadStream(process.argv[2]) });
for await (const line of rl) {
  if (!line.trim()) continue;
  try {
    const { status } = JSON.parse(line);
    counts.set(status, (counts.get(status) ?? 0) + 1);
  } catch {
    counts.set("unparsable", (counts.get("unparsable") ?? 0) + 1);
  }
}
console.table([...counts].sort((a, b) => b[1] - a[1]));`,
    "Run it with `node count-status.mjs access.jsonl`. It streams the file, so the 2 GB logs from prod are fine.",
  ],
  [
    "finds invoices that were issued twice for the same subscription period",
    "sql",
    `SELECT subscription_id, period_start, count(*) AS copies,
       array_agg(id ORDER BY created_at) AS invoice_ids
FROM invoices
WHERE status <> 'void'
  AND created_at > now() - interval '30 days'
GROUP BY subscription_id, period_start
HAVING count(*) > 1
ORDER BY copies DESC, period_start;`,
    "Run it on the read replica. The first id in each array is almost always the one to keep; the later copies came from the retry bug we fixed last week.",
  ],
  [
    "extracts the slowest requests from yesterday's gateway log",
    "bash",
    `zcat gateway-$(date -u -d yesterday +%F).log.gz \\
  | jq -c 'select(.duration_ms > 2000) | {ts, route, status, duration_ms, trace_id}' \\
  | sort -t: -k5 -n -r \\
  | head -n 50`,
    "If you want it grouped by route instead, pipe through `jq -s 'group_by(.route) | map({route: .[0].route, n: length})'`.",
  ],
  [
    "deletes docker images older than two weeks on the build runners",
    "bash",
    `#!/usr/bin/env bash
set -euo pipefail
docker image prune --all --force --filter "until=336h"
docker builder prune --force --filter "until=336h"
df -h /var/lib/docker | tail -n 1`,
    "I'd put it in a weekly systemd timer rather than cron so the output ends up in the journal.",
  ],
];

const PR_POINTS = [
  "The retry loop in the client swallows the last error; if all attempts fail we throw a generic `Error('failed')`, which makes the alerts useless. Rethrow the last error with the attempt count attached.",
  "The migration adds a NOT NULL column without a default. On the invoices table (about 40M rows) that takes an ACCESS EXCLUSIVE lock for the whole rewrite. Add it nullable, backfill in batches, then set NOT NULL.",
  "`Promise.all` over every account will open one connection per account. Use the existing `mapLimit` helper with a concurrency of 8.",
  "The new endpoint doesn't check that the export belongs to the caller's organization, so anyone with a valid token and a guessed id can download another tenant's file. This one is blocking.",
  "Small thing: the log line includes the full request body, which for this route contains card metadata. Log the request id and the size instead.",
  "The test mocks `Date.now()` but the code under test uses `performance.now()`, so the timeout branch is never exercised. Inject a clock instead.",
  "Naming: `handleData2` doesn't tell me anything. Something like `applyLedgerCorrections` would make the call site readable.",
  "The feature flag defaults to on when the flag service is unreachable. For a change touching payments I'd default to off.",
  "You can drop the manual JSON.stringify in the cache layer; the client already serializes and we end up double-encoding.",
  "Nice cleanup of the error types. Consider exporting them from the package index so the web app can narrow on them.",
];

const plural = (s) => (s.endsWith("y") && !s.endsWith("ey") ? `${s.slice(0, -1)}ies` : `${s}s`);

// A failing test: the error the user reports, its cause and the fix fit together.
const FAILURE_MODES = [
  {
    err: () => "TypeError: Cannot read properties of undefined (reading 'accountId')",
    cause: (r) =>
      `The fixture builds the ${r.pick(["invoice", "refund", "export job"])} before the account exists, so the lookup returns undefined on a cold cache and the test only passes when an earlier test warmed it.`,
    fix: "I moved the setup into a beforeEach and added an explicit await on the seed helper.",
  },
  {
    err: () => "AssertionError: expected 'pending' to be 'processed'",
    cause: (r) =>
      `It's a timing issue. The test awaits the queue flush, but the worker uses a ${r.int(2, 8) * 50}ms debounce, so on slower CI runners the assertion runs before the job has been processed.`,
    fix: "I replaced the fixed sleep with a poll on the job status (max 2 seconds) instead of relying on the debounce.",
  },
  {
    err: () => "Snapshot `totals 1` mismatched",
    cause: () =>
      "The merge changed the default timezone handling in src/billing/invoice.ts; the snapshot still expects UTC midnight, but the code now rounds to the account's local day.",
    fix: "I updated the snapshot and added a test that pins the timezone to Europe/Berlin so this stays covered.",
    file: "src/billing/invoice.ts",
  },
  {
    err: () => "RangeError: Invalid time value",
    cause: () =>
      "A fake clock leaks between tests: another test in the same worker calls vi.useFakeTimers() with an invalid start date and never restores real timers, so this one formats a NaN date.",
    fix: "I added vi.useRealTimers() to the afterEach in that file and turned on restoreMocks in the vitest config so it can't happen again elsewhere.",
  },
  {
    err: () => 'duplicate key value violates unique constraint "accounts_pkey"',
    cause: () =>
      "The test shares a database schema with the parallel e2e run. When both insert the seed account, the second insert fails.",
    fix: "Each vitest worker now gets its own schema suffix from VITEST_POOL_ID.",
  },
  {
    err: (r) => `Error: connect ECONNREFUSED 127.0.0.1:${r.pick([5432, 6379, 9200])}`,
    cause: () =>
      "The CI job starts the tests before the service container reports healthy; the health check was removed from the workflow in the same merge.",
    fix: "I restored the health check in .github/workflows/ci.yml and added a wait-for-port step.",
    file: ".github/workflows/ci.yml",
  },
];

// A log investigation: error, analysis, impact and next step that fit together.
const LOG_CASES = [
  {
    err: "Error: read ECONNRESET",
    analysis: (r, svc) =>
      `They all come from one pod (${svc}-${r.hex(9)}-${r.hex(5)}), which was scheduled on a node with a degraded network interface; the other pods are clean.`,
    impact: "User impact looks small: the requests are retried and succeed on the second attempt.",
    next: () => "I'd cordon the node and let the pod reschedule. Want me to do that?",
  },
  {
    err: "deadlock detected",
    analysis: (r) =>
      `The deadlocks are between the nightly ${r.pick(["reconciliation", "export"])} job and the refund handler: both update ledger_entries and invoices, but in opposite order.`,
    impact: "A few dozen refunds hit it and were retried automatically, so nothing is lost.",
    next: (r) =>
      `The fix is to lock invoices first in both paths. I drafted the change in ${r.pick(["src/ledger/reconcile.ts", "src/billing/refunds.ts"])}; want me to open the PR?`,
  },
  {
    err: "FATAL: remaining connection slots are reserved for non-replication superuser connections",
    analysis: (r) =>
      `It started right when the nightly ${r.pick(["export", "reindex", "digest"])} job kicked off, and the primary's connections are at ${r.int(92, 100)}% of max_connections.`,
    impact: "A few percent of requests on the affected routes failed, so customers are noticing.",
    next: () =>
      "Short term I can pause the job until the evening; the real fix is to route it through PgBouncer like the API pods.",
  },
  {
    err: "TypeError: Cannot read properties of null (reading 'country')",
    analysis: () =>
      "All the occurrences come from a single tenant whose accounts have no billing address, which the new tax validation path doesn't handle.",
    impact: "Only that tenant's invoice previews fail; invoicing itself still runs.",
    next: () => "I added a guard for the null case and a test; the PR is up for review.",
  },
  {
    err: "AxiosError: Request failed with status code 429",
    analysis: () =>
      "The tax provider started rate limiting us; their status page has had an open incident since this morning, and our retries without backoff are making it worse.",
    impact: "Checkouts fall back to cached rates, so there's no user-facing failure, just flagged invoices.",
    next: () => "I lowered the retry concurrency to 2 for now and I'm watching the error rate.",
  },
  {
    err: "Error [ERR_STREAM_PREMATURE_CLOSE]: Premature close",
    analysis: () =>
      "These are clients disconnecting mid-download on large CSV exports; the stream errors are logged at error level even though they're expected.",
    impact: "No real impact, it's noise.",
    next: () => "I can downgrade that log to debug when the client aborts. I opened an issue for it.",
  },
];

const ALERT_CASES = [
  [
    "KubePodCrashLooping",
    (r) =>
      `Two pods are crash-looping with exit code 137 (OOMKilled); memory climbed steadily after the ${r.ver()} deploy, which points at the new in-memory cache having no size limit.`,
    "I haven't changed anything yet. Do you want me to roll back?",
  ],
  [
    "HighErrorRate",
    () =>
      "The error rate spiked to 6% for four minutes and has since recovered on its own. It matches a Multi-AZ failover of the primary database at the same minute in the RDS event log.",
    "I've acknowledged the page and added a note with what I found.",
  ],
  [
    "P95LatencyAboveSLO",
    () =>
      "It's a false alarm: there's a gap in the metric because the Prometheus scrape job was restarted, and the alert rule treats missing data as firing.",
    "I've acknowledged it and opened a ticket to fix the rule's no-data handling.",
  ],
  [
    "DiskUsage85Percent",
    () =>
      "The disk is at 86% because the log rotation cron stopped running after the base image change; the old logs are still there.",
    "I cleaned up the old files and the alert resolved; I'll open a ticket for the root cause.",
  ],
  [
    "CertificateExpiresSoon",
    (r) =>
      `The cert for the ${r.pick(["api", "hooks", "exports"])} hostname expires in ${r.int(7, 13)} days. cert-manager tried to renew and failed: the DNS-01 challenge can't write to the zone since the IAM role was tightened last week.`,
    "I've put the missing route53:ChangeResourceRecordSets permission in a PR; once it's merged cert-manager retries on its own.",
  ],
  [
    "QueueDepthHigh",
    (r) =>
      `The queue is at ${r.int(21, 60)}k messages. ${r.int(2, 4)} of the consumers are stuck on a poison message that fails deserialization and is redelivered forever.`,
    "I moved the message to the dead-letter queue and the consumers are draining again.",
  ],
];

const T = {
  failingTest(r) {
    const [file, name] = r.pick(TESTS);
    const mode = r.pick(FAILURE_MODES);
    const branch = r.pick(BRANCHES);
    const err = mode.err(r);
    const user = r.pick([
      `The "${name}" test in ${file} started failing on CI after ${r.pick(PEOPLE)}'s merge. The error is \`${err}\`. Can you take a look?`,
      `CI is red on ${branch}: ${file} fails with \`${err}\`. Any idea what broke? It was green yesterday.`,
      `can you figure out why ${file} is flaky? it failed ${r.int(2, 6)} of the last ${r.pick([10, 20, 30])} runs on ${branch}, always "${name}" with ${err}`,
    ]);
    const verify = r.pick([
      `\`npx vitest run ${file}\` passes 20 times in a row locally. Pushed as ${r.sha()} on ${branch}.`,
      `The full suite is green locally (${r.int(300, 900)} passed, 0 failed, ${r.int(40, 190)}s). The CI rerun is in progress.`,
      `Pushed ${r.sha()}; CI is green on the rerun. I also opened a ticket to track the other flaky tests in that directory.`,
    ]);
    return {
      user,
      assistant: `${r.pick(["I reproduced it.", "Found it.", "I could reproduce it locally with the CI seed."])} ${mode.cause(r)}\n\n${mode.fix} ${verify}`,
      files: [file, ...(mode.file ? [mode.file] : [])],
    };
  },

  deployStatus(r, ctx) {
    const svc = svcOf(r, ctx);
    const env = r.pick(ENVS);
    const ver = r.ver();
    const user = r.pick([
      `What's the status of the ${svc} deploy to ${env}?`,
      `Did ${svc} ${ver} make it to ${env} yet?`,
      `is the ${env} rollout for ${svc} done? I need to tell support`,
      `Can you check whether ${svc} is healthy on ${env} after the last deploy?`,
    ]);
    const total = r.int(3, 12);
    const state = r.pick(["done", "done", "in progress", "paused"]);
    let body;
    if (state === "done") {
      body = `${svc} ${ver} is fully rolled out on ${env}: ${total}/${total} pods on the new image, all passing readiness. Error rate over the last 15 minutes is ${r.float(0.01, 0.3).toFixed(2)}% (baseline ${r.float(0.01, 0.3).toFixed(2)}%) and p95 latency is ${r.int(80, 400)}ms, so nothing stands out.`;
    } else if (state === "in progress") {
      const done = r.int(1, total - 1);
      body = `The rollout of ${svc} ${ver} on ${env} is in progress: ${done}/${total} pods are on the new image. The canary analysis passed (error rate ${r.float(0.01, 0.2).toFixed(2)}%, p95 ${r.int(90, 350)}ms), so Argo should finish the remaining pods in about ${r.int(3, 15)} minutes.`;
    } else {
      body = `The ${svc} rollout on ${env} is paused at ${r.int(1, 3)}/${total} pods. Argo stopped it because the canary's 5xx rate went to ${r.float(1.1, 4.5).toFixed(1)}% against a 1% threshold. Most of the errors are "${r.pick(ERRORS)}" from ${r.pick(FILES)}. I haven't rolled back yet; say the word and I'll abort the rollout, or I can dig into the errors first.`;
    }
    const extra = r.pick([
      "",
      ` The migration that shipped with it (${r.pick(["0041", "0042", "0043"])}) ran in ${r.int(2, 90)}s without locking issues.`,
      ` ${r.pick(PEOPLE)} approved the change; the release notes are in the #releases thread.`,
    ]);
    return { user, assistant: body + extra };
  },

  logInvestigation(r, ctx) {
    const svc = svcOf(r, ctx);
    const c = r.pick(LOG_CASES);
    const h = r.int(6, 7);
    const m = r.int(10, 59);
    const user = r.pick([
      `Seeing this in ${svc} logs since about 0${h}:${m} UTC:\n\n${c.err}\n    at ${r.pick(SRC_FILES)}:${r.int(20, 400)}:${r.int(5, 40)}\n\nHow bad is it?`,
      `${svc} is throwing "${c.err}" every few minutes. Is this new?`,
      `what's with all the "${c.err}" errors in ${svc}?`,
    ]);
    return {
      user,
      assistant: `I found ${r.int(12, 4800).toLocaleString("en-US")} occurrences in the last 24 hours, the first at 0${h}:${m} UTC. ${c.analysis(r, svc)}\n\n${c.impact} ${c.next(r)}`,
    };
  },

  prReview(r) {
    const pr = r.pr();
    const title = r.pick([
      "Add currency to invoices",
      "Retry webhooks with jitter",
      "Move session store to Redis",
      "Export v2: streaming CSV",
      "Tenant-scoped export downloads",
      "Batch ledger corrections",
    ]);
    const user = r.pick([
      `Can you review PR #${pr} (${title})?`,
      `${r.pick(PEOPLE)} asked for a second pair of eyes on #${pr}, "${title}". Could you go through it?`,
      `review #${pr} please, I want to merge before the freeze`,
    ]);
    const pts = [];
    while (pts.length < r.int(2, 4)) {
      const p = r.pick(PR_POINTS);
      if (!pts.includes(p)) pts.push(p);
    }
    const verdict = r.pick([
      "it's in good shape",
      "the approach makes sense but I have one blocking concern",
      "it's close; a couple of things to fix before merging",
    ]);
    const closing = r.pick([
      "I left these as inline comments on the PR too.",
      "Happy to pair on the migration part if that helps.",
      "Everything else looks good to me; tests cover the main paths.",
    ]);
    const body = pts.map((p, i) => `${i + 1}. ${p}`).join("\n");
    return {
      user,
      assistant: `I went through #${pr}. Overall ${verdict}. A few things:\n\n${body}\n\n${closing}`,
    };
  },

  dataQuestion(r) {
    const entity = r.pick(ENTITIES);
    const days = r.pick([1, 7, 14, 30]);
    const env = r.pick(["prod-eu", "prod-us"]);
    const failed = r.chance(0.35);
    const since = days === 1 ? "yesterday" : `${days} days ago`;
    const user = failed
      ? r.pick([
          `Can you pull the count of failed ${plural(entity)} since ${since} on ${env}?`,
          `how many ${plural(entity)} failed since ${since}? (${env})`,
        ])
      : r.pick([
          `How many ${plural(entity)} were created in the last ${days} days on ${env}?`,
          `quick one: number of ${plural(entity)} per day over the last ${days} days on ${env}?`,
        ]);
    const n = failed ? r.int(3, 900) : r.int(120, 98000);
    const obs = r.pick([
      "Nothing unusual; the weekend dip is the usual pattern.",
      `There's a spike on Tuesday (${r.int(2, 5)}x the daily average) that lines up with the marketing email.`,
      `That's about ${r.int(5, 30)}% lower than the same period last month.`,
      "Numbers exclude test accounts (is_internal = true).",
    ]);
    const where = failed ? `\n  AND status = 'failed'` : "";
    return {
      user,
      assistant: `I ran this against the ${env} read replica:\n\n\`\`\`sql\nSELECT date_trunc('day', created_at) AS day, count(*)\nFROM ${TABLES[entity]}\nWHERE created_at > now() - interval '${days} days'${where}\nGROUP BY 1 ORDER BY 1;\n\`\`\`\n\nTotal: ${n.toLocaleString("en-US")}. ${obs}`,
    };
  },

  ack(r, ctx) {
    const svc = svcOf(r, ctx);
    const generic = ["Done.", "Done.", "Done.", "Done!", "Ok, done."];
    const [user, specific] = r.pick([
      [`Please bump ${r.pick(DEPS)} to ${r.ver()} in ${svc} and open a PR.`, `Done. PR #${r.pr()} is open.`],
      [
        `Add ${r.pick(PEOPLE)} to the ${r.pick(["payments", "platform", "search"])} on-call rotation starting Monday.`,
        "Done, they're in from Monday 10:00.",
      ],
      [`Restart the ${svc} workers on ${r.pick(ENVS)}.`, "Done — all workers came back healthy."],
      [
        `Silence ${r.pick(ALERTS)} for ${svc} for 2 hours, we're doing maintenance.`,
        "Done, silenced until 2h from now.",
      ],
      (() => {
        const [from, to] = r.pick([
          ["export_v2", "export_streaming"],
          ["new_checkout", "checkout_2026"],
          ["fast_reindex", "reindex_parallel"],
        ]);
        return [
          `Rename the ${from} flag to ${to} everywhere.`,
          `Done. ${r.int(4, 19)} files changed, PR #${r.pr()}.`,
        ];
      })(),
      [
        `Close the stale ${r.pick(["dependabot", "renovate"])} PRs older than a month.`,
        `Done, closed ${r.int(3, 14)}.`,
      ],
      [`Merge #${r.pr()} once CI is green.`, "Done, merged."],
    ]);
    return { user, assistant: r.chance(0.7) ? r.pick(generic) : specific, short: true };
  },

  explain(r, ctx) {
    const [concept, text] = r.pick(CONCEPTS);
    const user = r.pick([
      `Can you explain why we use ${concept}? I'm new to ${ctx.svc} and the design doc is gone.`,
      `Why do we have ${concept}? Feels like overkill.`,
      `remind me what ${concept} is for`,
    ]);
    return { user, assistant: text };
  },

  script(r) {
    const [task, lang, code, note] = r.pick(SCRIPTS);
    const user = r.pick([
      `Write me a quick script that ${task}.`,
      `Do you have something handy that ${task}?`,
      `I need a one-off that ${task}, nothing fancy`,
    ]);
    return { user, assistant: `Here's a small one:\n\n\`\`\`${lang}\n${code}\n\`\`\`\n\n${note}` };
  },

  metrics(r, ctx) {
    const svc = svcOf(r, ctx);
    const q = r.int(0, 3);
    if (q === 0) {
      const p95 = r.int(120, 900);
      return {
        user: `What's the p95 latency for ${svc} this week compared to last week?`,
        assistant: `p95 for ${svc} this week is ${p95}ms, last week it was ${p95 + r.int(-90, 140)}ms. The slowest route is ${r.pick(["POST /v1/invoices", "GET /v1/exports/:id", "POST /oauth/token", "GET /search"])} at ${r.int(900, 2600)}ms p95, mostly from ${r.pick(["a cold cache after Tuesday's deploy", "two large tenants running exports at 09:00", "the tax provider being slow"])}. Everything is within the SLO except that route.`,
      };
    }
    if (q === 1) {
      const total = r.float(80, 900);
      return {
        user: r.pick([
          "Can you break down yesterday's AWS bill by service?",
          "what did we spend on AWS yesterday?",
        ]),
        assistant: `Yesterday's total was $${total.toFixed(2)}. The biggest items: EC2 $${(total * 0.41).toFixed(2)}, RDS $${(total * 0.27).toFixed(2)}, S3 and data transfer $${(total * 0.12).toFixed(2)}, the rest is spread over CloudWatch, NAT gateway and Lambda. That's ${r.int(2, 14)}% ${r.pick(["above", "below"])} the 30-day average; the difference is mostly ${r.pick(["the reindex job", "NAT traffic from the new export workers", "a forgotten staging cluster"])}.`,
      };
    }
    if (q === 2) {
      const calls = r.int(900, 3800);
      const spend = calls * r.float(0.008, 0.012);
      return {
        user: "How much did we spend on the LLM judges yesterday?",
        assistant: `$${spend.toFixed(2)} over ${calls.toLocaleString("en-US")} judge calls. Observation extraction and consolidation are ${r.int(70, 85)}% of it since they run after every message; the gates only run when a config change is proposed (${r.int(5, 30)} times yesterday). The daily cap is $50, so we're at ${Math.round((spend / 50) * 100)}% of it.`,
      };
    }
    const depth = r.int(0, 40000);
    return {
      user: `How deep is the ${r.pick(["webhook", "email", "export", "reindex"])} queue right now?`,
      assistant: `${depth.toLocaleString("en-US")} messages, oldest is ${r.int(1, 50)} minutes old. Consumers: ${r.int(2, 16)} running, processing about ${r.int(40, 900)}/s. ${depth > 20000 ? "That's high; at this rate it drains in roughly an hour. I can scale the consumers up if you want." : "That's normal for this time of day."}`,
    };
  },

  alert(r, ctx) {
    const svc = svcOf(r, ctx);
    const [a, finding, action] = r.pick(ALERT_CASES);
    return {
      user: r.pick([
        `PagerDuty just fired ${a} for ${svc}. What's going on?`,
        `got paged for ${a} on ${svc}, can you check before I open my laptop`,
      ]),
      assistant: `${a} fired at ${r.int(8, 19)}:${String(r.int(0, 59)).padStart(2, "0")} UTC for ${svc} on ${r.pick(ENVS)}. ${finding(r)} ${action}`,
    };
  },

  reminder(r) {
    const task = r.pick([
      "follow up with finance about the Q4 invoices",
      "rotate the staging database password",
      "check the canary metrics",
      "send the postmortem draft to the team",
      "renew the wildcard certificate",
    ]);
    const hour = r.int(9, 16);
    return {
      user: `Remind me on Monday at ${hour}:00 to ${task}.`,
      assistant: `Sure. I'll remind you on Monday, Nov 23 at ${hour}:00 UTC to ${task}. If you'd rather get it in the #ops channel than as a DM, tell me and I'll move it.`,
    };
  },

  configLookup(r, ctx) {
    const svc = svcOf(r, ctx);
    const [setting, env, value] = r.pick([
      ["the request timeout", "REQUEST_TIMEOUT_MS", "30000 ms"],
      ["the DB pool size", "DB_POOL_SIZE", "10 connections per pod"],
      ["the rate limit per API key", "RATE_LIMIT_PER_MIN", "600 requests/minute"],
      ["the retry count", "MAX_RETRIES", "5 attempts"],
      ["the log level", "LOG_LEVEL", "info"],
    ]);
    return {
      user: `Where is ${setting} configured for ${svc}?`,
      assistant: `The default lives in src/config/defaults.ts (${value}), and it's overridden per environment in infra/k8s/${svc}/values-${r.pick(ENVS)}.yaml via the ${env} env var. There's also a per-tenant override table for the big customers, but only ${r.int(2, 9)} tenants use it. Changing the env var needs a restart; the table is read every 60 seconds.`,
    };
  },

  runbook(r, ctx) {
    const svc = svcOf(r, ctx);
    const env = r.pick(ENVS);
    const which = r.int(0, 2);
    if (which === 0) {
      return {
        user: `What's the procedure to fail over the ${svc} database on ${env}? I want to have it ready before the maintenance window.`,
        assistant: `Here's the procedure we used last time, adapted for ${svc} on ${env}:\n\n1. Announce in #ops and set the status page to "scheduled maintenance" 30 minutes before.\n2. Scale the ${svc} workers to zero so nothing holds long transactions: \`kubectl -n ${svc} scale deploy/${svc}-worker --replicas=0\`. Leave the API pods up; they retry on connection loss.\n3. Check replication lag on the standby is under 1 second: \`SELECT now() - pg_last_xact_replay_timestamp();\`.\n4. Trigger the failover: \`aws rds reboot-db-instance --db-instance-identifier ${svc}-${env} --force-failover\`. Expect 60-120 seconds of connection errors.\n5. Watch the API error rate in the ${svc} dashboard; it should drop back to baseline within two minutes of the DNS flip.\n6. Scale the workers back up (${r.int(3, 12)} replicas on ${env}) and check the queue drains.\n7. Close the maintenance on the status page and post the timings in the thread.\n\nRollback: there isn't really one; if the new primary misbehaves, fail over again. The last run took ${r.int(6, 14)} minutes end to end, most of it waiting for the workers to drain. One gotcha: PgBouncer caches the old IP for up to 30 seconds, so restart it right after step 4 if errors don't stop.`,
      };
    }
    if (which === 1) {
      return {
        user: `Can you write up how to rotate the ${svc} API signing key? Last time it took us half a day.`,
        assistant: `Rotation without downtime works because the verifier accepts a list of keys. Steps:\n\n1. Generate the new key pair locally: \`openssl genpkey -algorithm ed25519 -out ${svc}-${r.hex(6)}.pem\`. Never generate it on a shared box.\n2. Add the new public key to the verifier list in the secrets manager (path secret/${env}/${svc}/jwt/public_keys). Keep the old key in the list.\n3. Deploy ${svc} so every pod loads the two public keys. Confirm with the /internal/keys endpoint that all ${r.int(3, 12)} pods report both key ids.\n4. Switch the signer to the new private key (secret/${env}/${svc}/jwt/signing_key) and deploy again. New tokens carry the new kid; old tokens still verify.\n5. Wait for the longest token lifetime (currently ${r.pick(["24 hours", "7 days", "12 hours"])}) so the old tokens expire naturally.\n6. Remove the old public key from the list and deploy a third time.\n7. Delete the old private key from the secrets manager and note the rotation date in the runbook table.\n\nThe half day last time came from doing steps 3 and 4 in one deploy: pods that started with the new signer issued tokens the pods without the new public key rejected. Doing them as two deploys avoids that entirely.`,
      };
    }
    return {
      user: `Give me a checklist for onboarding ${r.pick(PEOPLE)} to the ${svc} on-call next week.`,
      assistant: `Checklist for the ${svc} on-call onboarding:\n\nAccess\n- PagerDuty: add to the ${svc} schedule as shadow for the first week, primary from the second.\n- AWS: the ops-readonly role on ${env} plus break-glass via the access request bot (expires after 4 hours).\n- Grafana: the ${svc} folder and the shared SLO dashboards.\n- The #${svc}-alerts channel and the incident bridge link.\n\nReading\n- The ${svc} runbook, especially the sections on queue backlog and database failover.\n- The last three postmortems involving ${svc}; they cover the failure modes that actually happen.\n- The alert catalogue: which alerts are actionable at night and which can wait until morning.\n\nPractice\n- Pair with the current primary for one handover.\n- Run the staging game day: we break the worker deployment and they walk through diagnosis and rollback.\n- Trigger a test page to check their phone actually rings (it failed silently for two people last quarter).\n\nI can send the access requests now if you confirm the start date.`,
    };
  },

  summary(r) {
    const topic = r.pick([
      "moving the session store to Redis",
      "the November billing incident",
      "dropping Node 18 support",
      "splitting the export worker",
    ]);
    const chan = r.pick(["#platform", "#payments-eng", "#incidents", "#architecture"]);
    return {
      user: `Summarize the discussion in ${chan} about ${topic}.`,
      assistant: `Here is the summary of the ${chan} thread about ${topic}:\n\n- ${r.pick(PEOPLE)} proposed it, mainly to ${r.pick(["reduce the load on the primary", "simplify on-call", "unblock the EU data residency work"])}.\n- ${r.pick(PEOPLE)} raised the risk of ${r.pick(["a long migration window", "losing sessions during the cutover", "breaking the two customers still on the old SDK"])}; the agreed mitigation is a dual-write period of ${r.int(1, 3)} weeks.\n- Open question: who owns ${r.pick(["the runbook", "the rollback plan", "customer comms"])}. Nobody has picked it up yet.\n- Decision: go ahead, target date ${r.pick(["Dec 2", "Dec 9", "Jan 13"])}, with a go/no-go in the Thursday sync.`,
    };
  },
};

const TEMPLATE_NAMES = Object.keys(T);

// ---------------------------------------------------------------------------------------------
// Hand-written openers and special turns
// ---------------------------------------------------------------------------------------------

const ONCALL_Q = "who's on call for payments this week?";
const ONCALL_A =
  "Payments on-call this week (Nov 16-22): primary is Aisha, secondary is Marco. Handover is Monday 10:00 CET. Escalation after 15 minutes without an ack goes to Ravi as engineering manager. The PagerDuty schedule is 'payments-primary' if you want to page directly.";

const SLACK_FOOTER =
  "\n\n—\nPhantom · ops assistant · reply in this thread to continue.\nCommands run by Phantom are logged in #phantom-audit. Double-check anything that touches prod.";

const OPENERS = {
  cli: {
    user: "I'm picking up the invoice-currency branch today. Can you remind me where we left off and what's still failing?",
    assistant:
      "On feat/invoice-currency the schema part is done: migration 0042 adds invoices.currency (nullable, backfilled from the account's billing country) and the model exposes it. Still open:\n\n1. src/billing/invoice.ts formats totals with a hardcoded '$'; it should use Intl.NumberFormat with the invoice currency.\n2. test/billing/invoice.test.ts has two failing cases for JPY, which has no minor units, so our cents-based rounding is off by 100x.\n3. The PDF template still assumes USD.\n\nI'd start with the rounding since the other two depend on it.",
    files: [
      "src/billing/invoice.ts",
      "src/db/migrations/0042_add_invoice_currency.sql",
      "test/billing/invoice.test.ts",
    ],
  },
  slack1: {
    user: "Morning! Can you give me a quick overview of what happened overnight? Anything I need to look at before standup?",
    assistant:
      "Morning. Quiet night overall:\n\n- One page at 03:12 UTC (QueueDepthHigh on webhook-relay), auto-resolved after 9 minutes when the consumers caught up.\n- The nightly reconciliation finished at 04:40 with 3 mismatches, all refunds created during the run; they balance in this morning's pass.\n- Renovate opened 4 PRs; CI is green on all of them.\n- Staging was redeployed twice by the export-v2 branch.\n\nNothing needs you before standup. The only thing I'd mention is the reconciliation mismatches, since finance asked about them last week.",
  },
  telegram1: {
    user: "hey, on the train. anything on fire?",
    assistant:
      "Nothing on fire. All services are green; the only open alert is CertificateExpiresSoon for the staging wildcard cert (expires in 12 days, there's a ticket). Enjoy the ride.",
  },
  slack2: {
    user: "We're starting the billing-api load test in 10 minutes. Can you keep an eye on the primary DB and ping here if CPU goes over 70% or replication lag over 5 seconds?",
    assistant:
      "Will do. Current baseline: primary CPU 23%, replication lag 0.4s, 142 active connections out of 400. I'll post here every 10 minutes during the test and immediately if CPU crosses 70% or lag crosses 5 seconds. If it crosses 90% I'll suggest stopping the test rather than wait for you.",
  },
  telegram2: {
    user: "Can you check if the export for Northwind finished? They're asking support about it.",
    assistant:
      "The Northwind export (job exp_7Qz2, requested 12:41 UTC, 1.8M rows) finished at 13:06 UTC. The download link was emailed to their admin at 13:07 and has been opened once. If support needs it, the link is valid until Nov 27.",
  },
  slack3: {
    user: "Can you help me draft the postmortem for this morning's webhook delays? Start with a timeline.",
    assistant:
      "Here's a first draft of the timeline (all UTC):\n\n- 06:58 Deploy of webhook-relay 2.14.0 starts.\n- 07:03 Delivery p95 rises from 1.2s to 48s; queue depth climbs.\n- 07:11 QueueDepthHigh pages the platform on-call.\n- 07:19 On-call identifies the new retry policy as the cause (no jitter, all retries land at the same instants).\n- 07:26 Rollback to 2.13.4 completes.\n- 07:52 Backlog drained, p95 back to 1.3s.\n\nTotal impact: 49 minutes of delayed deliveries, no lost events. Want me to do the contributing factors next?",
  },
};

// ---------------------------------------------------------------------------------------------
// Stuck-phase user messages (10-120 chars, varied)
// ---------------------------------------------------------------------------------------------

function stuckUserMessage(r, i, elapsedMin, ts, history) {
  if (i === 0) return "ok the container is back up. can you rerun the JPY rounding tests?";
  if (i === 1) return "hello?";
  if (i === 2) return "what previous message? I just asked you to rerun the tests";
  const hours = Math.floor(elapsedMin / 60);
  const mins = Math.floor(elapsedMin % 60);
  const since = hours > 0 ? `${hours}h ${mins}m` : `${mins} minutes`;
  const d = new Date(ts);
  const clock = `${String(d.getUTCHours()).padStart(2, "0")}:${String(d.getUTCMinutes()).padStart(2, "0")}`;
  const svc = r.pick(SERVICES);
  const env = r.pick(ENVS);
  const person = r.pick(PEOPLE);
  const [file, name] = r.pick(TESTS);
  const earlier = history[r.int(Math.max(0, history.length - 40), history.length - 1)];
  const x = r.next();
  const pGreeting = 0.16;
  const pFrustration = Math.min(0.42, 0.14 + elapsedMin / 1000);
  if (x < pGreeting) {
    return r.pick([
      "hello?",
      "hello??",
      "are you there",
      "you there?",
      "ping",
      "hi phantom",
      "anyone home?",
      "still there?",
      "test 123",
      "are you alive",
      "hello, anybody?",
      `ping (${clock})`,
      `hello? it's ${clock}`,
    ]);
  }
  if (x < pGreeting + pFrustration) {
    return r.pick([
      "why do you keep saying that",
      `you've been "working on my previous message" for ${since}`,
      `this is message #${i + 1} and you still say the same thing`,
      "cancel whatever you're doing and answer this one",
      "stop. cancel. abort.",
      "/cancel",
      "/reset",
      "/new",
      `it's been ${since}. what is taking so long?`,
      "is something broken on your side? you haven't answered anything since the restart",
      `I restarted the CLI ${r.int(2, 6)} times now, are you back?`,
      "what are you even working on? there is no previous message",
      `forget the previous request. new request: what time is it? (it's ${clock} here)`,
      `still waiting since ${since}...`,
      "did the container recreation break your session?",
      "are you stuck in a loop? you reply instantly with the same sentence every time",
      `${person} says the bot answers the same line to them too`,
      "what was my previous message? tell me what you think you're working on",
      `the last thing I asked was "${earlier.slice(0, 70)}"`,
      "can you at least tell me what you're waiting for",
      "is there a queue? how long is it?",
      `I'm filing a bug. ${hours > 0 ? `${hours}+ hours` : `${mins} minutes`} of "please wait" is not ok`,
      "if you're busy, how come you answer in 20 milliseconds?",
      `seriously, ${clock} and still nothing`,
      "ok I'll wait. again.",
      "please just answer the question",
      `does /reset do anything? tried it ${r.int(2, 5)} times`,
    ]);
  }
  const pr = r.pr();
  return r.pick([
    `can you check the ${svc} logs on ${env}? something is off since ${clock}`,
    `what's the status of PR #${pr}? ${person} is waiting for the review`,
    `run \`npx vitest run ${file}\` again please`,
    `why does "${name}" fail on CI?`,
    `how many ${plural(r.pick(ENTITIES))} failed today on ${env}?`,
    `did the ${svc} deploy to ${env} finish?`,
    `open ${r.pick(FILES)} and show me line ${r.int(10, 400)}`,
    `what does "${r.pick(ERRORS).slice(0, 60)}" mean?`,
    `bump ${r.pick(DEPS)} to ${r.ver()} in ${svc}`,
    "git status",
    "what branch am I on?",
    `commit what you have with message "wip: ${r.pick(["currency formatting", "JPY rounding", "minor units", "pdf template"])}"`,
    "summarize the diff on feat/invoice-currency",
    `can you explain ${r.pick(CONCEPTS)[0]} to me?`,
    `is ${svc} healthy on ${env}?`,
    `run the linter on ${r.pick(SRC_FILES)}`,
    `show me the last ${r.int(3, 20)} commits on ${r.pick(BRANCHES)}`,
    "what's the JPY rounding bug again? remind me",
    `write a test for "${name}"`,
    "how do I format JPY with Intl.NumberFormat? maximumFractionDigits 0?",
    `does KRW also have zero minor units? and ${r.pick(["CLP", "VND", "ISK"])}?`,
    `${person} asks if the currency migration can go out today`,
    `can you draft the PR description for feat/invoice-currency?`,
    `check if ${r.pick(ALERTS)} is still firing for ${svc}`,
    `what's the p95 for ${svc} in the last hour?`,
    `rerun the failed CI job on ${r.pick(BRANCHES)}`,
    `grep the repo for "${r.pick(["toFixed(2)", "* 100", "minorUnits", "formatMoney"])}" and list the files`,
    `I pushed ${r.sha()}, can you review it?`,
    `restart the ${svc} workers on ${env}`,
    `what changed in ${svc} between ${r.ver()} and ${r.ver()}?`,
  ]);
}

// ---------------------------------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------------------------------

function replyCost(r, assistant) {
  return round6(0.004 + assistant.length * 0.000035 + r.float(0.01, 0.25));
}

/**
 * Builds a healthy session plan: list of {tsUser, tsReply, user, assistant, files, healthy}.
 */
function planHealthy(r, spec) {
  const turns = [];
  let t = spec.start;
  const used = [];
  for (let i = 0; i < spec.turns; i++) {
    let ex;
    if (i === 0 && spec.opener) ex = spec.opener;
    else if (spec.special?.[i]) ex = spec.special[i];
    else {
      let name;
      do {
        name = r.pick(spec.templates ?? TEMPLATE_NAMES);
      } while (used.slice(-2).includes(name) && name !== "ack");
      // short acks come in runs sometimes
      used.push(name);
      ex = T[name](r, spec);
    }
    let assistant = ex.assistant;
    if (spec.footer && !ex.short) assistant += spec.footer;
    const latency = ex.short ? r.int(3, 20) * SEC : r.int(8, 95) * SEC;
    turns.push({
      tsUser: t,
      tsReply: t + latency,
      user: ex.user,
      assistant,
      files: ex.files ?? [],
      short: !!ex.short,
    });
    t += latency + r.float(spec.gapMin[0], spec.gapMin[1]) * MIN;
  }
  return turns;
}

function transcriptChars(users, assistants) {
  let n = 0;
  for (const s of users) n += s.length;
  for (const s of assistants) n += s.length;
  return n;
}

function usageFor(r, model, chars, opts = {}) {
  const total = 550 + Math.ceil(chars / 3.6) + r.int(-15, 45);
  const out = model === HAIKU ? r.int(80, 250) : r.int(300, 900);
  const u = { input_tokens: total, output_tokens: out };
  if (opts.cache !== false) {
    if (r.chance(0.08)) {
      const cached = Math.min(total - 200, r.pick([512, 1024, 1536, 2048]));
      if (cached > 0) {
        u.input_tokens = total - cached;
        u.cache_read_input_tokens = cached;
      }
    } else if (r.chance(0.02)) {
      const created = Math.min(total - 200, 1024);
      if (created > 0) {
        u.input_tokens = total - created;
        u.cache_creation_input_tokens = created;
      }
    }
  }
  return u;
}

/**
 * Expands message events into judge lines.
 * msg: {key, userId, sessionId, users[], assistants[], files[], outcome, cost, startedAt, endedAt, healthy, configChange}
 */
function judgeLines(r, msg, opts = {}) {
  const chars = transcriptChars(msg.users, msg.assistants);
  const session = {
    session_id: msg.sessionId,
    session_key: msg.key,
    user_id: msg.userId,
    user_messages: msg.users,
    assistant_messages: msg.assistants,
    tools_used: [],
    files_tracked: msg.files,
    outcome: msg.outcome,
    cost_usd: msg.cost,
    started_at: iso(msg.startedAt),
    ended_at: iso(msg.endedAt),
  };
  const lines = [];
  // Calls of one judge kind on one transcript that use different prompts carry a `variant`
  // (the constitution principle, the safety pass, the golden case), so the guard does not
  // mistake them for identical requests.
  const add = (ts, judge, model, variant) =>
    lines.push({
      ts,
      judge,
      model,
      ...(variant ? { variant } : {}),
      session,
      usage: usageFor(r, model, chars, opts),
    });
  let t = msg.endedAt + r.int(200, 1500);
  add(t, "observation_extraction", SONNET);
  t += r.int(80, 1800);
  add(t, "consolidation", SONNET);
  if (msg.configChange) {
    t += r.int(4, 12) * SEC;
    for (let k = 0; k < 3; k++) add(t + k * r.int(3, 40), "constitution_gate", SONNET, `principle-${k + 1}`);
    t += r.int(3, 9) * SEC;
    for (let k = 0; k < 3; k++) add(t + k * r.int(3, 40), "safety_gate", SONNET, `pass-${k + 1}`);
    t += r.int(3, 8) * SEC;
    for (let k = 0; k < 5; k++) add(t + k * r.int(3, 40), "regression_gate", HAIKU, `golden-${k + 1}`);
    t += r.int(2, 6) * SEC;
    add(t, "quality_assessment", SONNET);
  }
  return lines;
}

// About 1 in 15 healthy messages proposes a config change: a countdown with mean 15 keeps the
// rate close to that over ~140 healthy messages (plain coin flips drift a lot at this size).
let changeCountdown = 9;
function proposeChange(r) {
  changeCountdown -= 1;
  if (changeCountdown > 0) return false;
  changeCountdown = r.int(8, 22);
  return true;
}

/** Turns a key's turn plan into message events with cumulative transcripts. */
function messagesForKey(r, key, userId, turns, opts) {
  const msgs = [];
  const users = [];
  const assistants = [];
  const files = [];
  const startedAt = turns[0].tsUser;
  let prevSid = null;
  for (const turn of turns) {
    users.push(turn.user);
    assistants.push(turn.assistant);
    for (const f of turn.files ?? []) if (!files.includes(f)) files.push(f);
    const sid = turn.canned ? "" : (turn.sessionId ?? prevSid ?? `sdk_${r.hex(24)}`);
    if (!turn.canned) prevSid = sid;
    msgs.push({
      key,
      userId,
      sessionId: sid,
      users: users.slice(),
      assistants: assistants.slice(),
      files: files.slice(),
      outcome: "success",
      cost: turn.canned ? 0 : replyCost(r, turn.assistant),
      startedAt,
      endedAt: turn.tsReply,
      healthy: !turn.canned,
      configChange: !turn.canned && opts.configChanges !== false && proposeChange(r),
      canned: !!turn.canned,
    });
  }
  return msgs;
}

function sortLines(lines) {
  return lines
    .map((l, i) => [l, i])
    .sort((a, b) => a[0].ts - b[0].ts || a[1] - b[1])
    .map(([l]) => ({ ...l, ts: iso(l.ts) }));
}

// ---------------------------------------------------------------------------------------------
// The big incident file
// ---------------------------------------------------------------------------------------------

function buildIncident() {
  const r = makeRng(0x25_0182);
  const at = (h, m) => T0 + ((h - 8) * 60 + m) * MIN;

  const healthySpecs = [
    {
      key: "slack:C04ABCD:1732089600.123",
      userId: "U02HX7KPL",
      svc: "billing-api",
      start: at(8, 0) + 4 * SEC,
      turns: 30,
      gapMin: [2, 9],
      opener: OPENERS.slack1,
    },
    {
      key: "telegram:5512:main",
      userId: "5512",
      svc: "payments-reconciler",
      start: at(8, 37),
      turns: 24,
      gapMin: [6, 40],
      opener: OPENERS.telegram1,
      special: {
        6: { user: ONCALL_Q, assistant: ONCALL_A },
        15: { user: ONCALL_Q, assistant: ONCALL_A },
      },
      templates: ["deployStatus", "metrics", "alert", "ack", "reminder", "dataQuestion", "logInvestigation"],
    },
    {
      key: `slack:C07OPS42:${(T0 + 150 * MIN) / 1000}.204`,
      userId: "U05RZ1Q8B",
      svc: "billing-api",
      start: at(10, 30) + 12 * SEC,
      turns: 40,
      gapMin: [1.5, 6],
      opener: OPENERS.slack2,
      footer: SLACK_FOOTER,
    },
    {
      key: "telegram:8830:main",
      userId: "8830",
      svc: "export-service",
      start: at(13, 2),
      turns: 16,
      gapMin: [5, 22],
      opener: OPENERS.telegram2,
      templates: ["deployStatus", "metrics", "ack", "dataQuestion", "alert", "configLookup"],
    },
    {
      key: `slack:C04ABCD:${(T0 + 420 * MIN) / 1000}.918`,
      userId: "U03M4TT0A",
      svc: "webhook-relay",
      start: at(15, 0) + 30 * SEC,
      turns: 20,
      gapMin: [4, 14],
      opener: OPENERS.slack3,
    },
  ];

  const allMsgs = [];

  // cli:cli:local, healthy phase (local coding work), then stuck after the container restart.
  const cliSpec = {
    key: "cli:cli:local",
    svc: "billing-api",
    start: at(8, 11) + 27 * SEC,
    turns: 10,
    gapMin: [3, 11],
    opener: OPENERS.cli,
    templates: ["failingTest", "prReview", "script", "ack", "configLookup", "explain"],
  };
  const cliHealthy = planHealthy(r, cliSpec);
  const recreatedAt = at(9, 41) + 17 * SEC;
  if (cliHealthy.at(-1).tsReply > recreatedAt) throw new Error("cli healthy phase overruns the restart");

  const STUCK = 350;
  const stuckStart = at(9, 47) + 3 * SEC;
  const stuckEnd = at(19, 52);
  // Raw gaps: bursts of quick retries, pauses, occasional long silences.
  const raw = [];
  for (let i = 0; i < STUCK - 1; i++) {
    const x = r.next();
    raw.push(x < 0.45 ? r.float(6, 40) : x < 0.85 ? r.float(40, 200) : r.float(200, 900));
  }
  const scale = (stuckEnd - stuckStart) / SEC / raw.reduce((a, b) => a + b, 0);
  const stuckTurns = [];
  let ts = stuckStart;
  for (let i = 0; i < STUCK; i++) {
    const elapsedMin = (ts - stuckStart) / MIN;
    const history = [...cliHealthy.map((x) => x.user), ...stuckTurns.map((x) => x.user)];
    // Mostly distinct messages: re-draw exact repeats a few times (short pings may still repeat).
    let user = stuckUserMessage(r, i, elapsedMin, ts, history);
    for (let k = 0; k < 4 && history.includes(user); k++)
      user = stuckUserMessage(r, i, elapsedMin, ts, history);
    stuckTurns.push({
      tsUser: ts,
      tsReply: ts + r.int(12, 90),
      user,
      assistant: CANNED,
      canned: true,
    });
    // keep >= 5 s between stuck messages so each message's judges finish before the next one
    if (i < STUCK - 1) ts += Math.max(5, raw[i] * scale) * SEC;
  }
  const cliMsgs = messagesForKey(r, "cli:cli:local", "local", [...cliHealthy, ...stuckTurns], {});
  allMsgs.push(...cliMsgs);

  for (const spec of healthySpecs) {
    const plan = planHealthy(r, spec);
    allMsgs.push(...messagesForKey(r, spec.key, spec.userId, plan, {}));
  }

  let lines = [];
  for (const m of allMsgs) lines.push(...judgeLines(r, m));
  lines = sortLines(lines);
  return { lines, recreatedAt, stuckStart };
}

// ---------------------------------------------------------------------------------------------
// small.jsonl
// ---------------------------------------------------------------------------------------------

function buildSmall() {
  const r = makeRng(0x5a11);
  const at = (m, s = 0) => T0 + m * MIN + s * SEC;
  const cliTurns = [
    {
      tsUser: at(1, 5),
      tsReply: at(1, 41),
      user: "run the invoice tests and tell me what fails",
      assistant:
        "2 of 38 tests fail, both in test/billing/invoice.test.ts: 'formats JPY without minor units' and 'rounds JPY totals'. The code multiplies every amount by 100 before rounding, which is wrong for zero-decimal currencies.",
      files: ["test/billing/invoice.test.ts"],
    },
    {
      tsUser: at(4, 12),
      tsReply: at(4, 58),
      user: "fix it using the currency's minor unit from Intl",
      assistant:
        "Fixed in src/billing/invoice.ts: the minor unit now comes from new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits. All 38 tests pass.",
      files: ["src/billing/invoice.ts"],
    },
  ];
  const stuckUsers = [
    "ok, now commit that please",
    "hello?",
    "what previous message?",
    "git status",
    "are you there",
    "cancel whatever you're doing",
    "/reset",
    "hello?",
  ];
  let t = at(9, 30);
  for (const u of stuckUsers) {
    cliTurns.push({ tsUser: t, tsReply: t + r.int(15, 60), user: u, assistant: CANNED, canned: true });
    t += r.int(25, 240) * SEC;
  }
  const slackTurns = [
    {
      tsUser: at(0, 20),
      tsReply: at(0, 55),
      user: "Morning! Anything from overnight I should know about?",
      assistant:
        "Quiet night: one QueueDepthHigh page on webhook-relay at 03:12 UTC that auto-resolved, and the nightly reconciliation finished with 3 refund mismatches that balanced in the morning pass.",
    },
    {
      tsUser: at(7, 2),
      tsReply: at(7, 9),
      user: "Please restart the export workers on staging.",
      assistant: "Done.",
    },
    {
      tsUser: at(16, 40),
      tsReply: at(17, 22),
      user: "What's the p95 for billing-api today?",
      assistant:
        "p95 for billing-api today is 212ms, against 198ms yesterday. The slowest route is POST /v1/invoices at 1.4s, mostly tax-provider time.",
    },
  ];
  const tgTurns = [
    {
      tsUser: at(3, 0),
      tsReply: at(3, 21),
      user: "anything on fire?",
      assistant:
        "Nothing on fire. All services are green; the only open alert is the staging certificate expiring in 12 days, and there's a ticket for it.",
    },
    {
      tsUser: at(20, 15),
      tsReply: at(20, 44),
      user: ONCALL_Q,
      assistant: ONCALL_A,
    },
  ];
  const msgs = [
    ...messagesForKey(r, "cli:cli:local", "local", cliTurns, { configChanges: false }),
    ...messagesForKey(r, "slack:C04ABCD:1732089600.123", "U02HX7KPL", slackTurns, { configChanges: false }),
    ...messagesForKey(r, "telegram:5512:main", "5512", tgTurns, { configChanges: false }),
  ];
  let lines = [];
  for (const m of msgs) lines.push(...judgeLines(r, m, { cache: false }));
  lines = sortLines(lines).map((l) => JSON.stringify(l));
  // Bad lines (1-based positions in the final file):
  //   9 = a truncated copy of line 8 (a torn write), not valid JSON;
  //  21 = a re-logged copy of the latest healthy-key record before it, with output_tokens -42.
  lines.splice(8, 0, lines[7].slice(0, 137));
  const at20 = JSON.parse(lines[19]);
  let src = null;
  for (let i = 19; i >= 0 && !src; i--) {
    try {
      const o = JSON.parse(lines[i]);
      if (o.session.assistant_messages.at(-1) !== CANNED) src = o;
    } catch {}
  }
  const negative = { ...src, ts: at20.ts, usage: { ...src.usage, output_tokens: -42 } };
  lines.splice(20, 0, JSON.stringify(negative));
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

const PRICES = { [SONNET]: [3, 15], [HAIKU]: [1, 5] };
function lineCost(l) {
  const [pin, pout] = PRICES[l.model];
  const u = l.usage;
  return (
    (u.input_tokens * pin +
      (u.cache_read_input_tokens ?? 0) * pin * 0.1 +
      (u.cache_creation_input_tokens ?? 0) * pin * 1.25 +
      u.output_tokens * pout) /
    1e6
  );
}

function main() {
  const { lines } = buildIncident();
  const text = `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`;
  const raw = Buffer.from(text, "utf8");
  const gz = gzipSync(raw, { level: 9 });
  writeFileSync(join(HERE, "phantom-incident.jsonl.gz"), gz);

  let firstCanned = null;
  const cannedLines = [];
  let cost = 0;
  let stuckCost = 0;
  const keys = new Map();
  lines.forEach((l, i) => {
    const c = lineCost(l);
    cost += c;
    keys.set(l.session.session_key, (keys.get(l.session.session_key) ?? 0) + 1);
    if (l.session.assistant_messages.at(-1) === CANNED) {
      stuckCost += c;
      cannedLines.push(i + 1);
      if (firstCanned === null) firstCanned = i + 1;
    }
  });
  console.log("phantom-incident.jsonl.gz");
  console.log(`  lines: ${lines.length}`);
  console.log(`  uncompressed: ${raw.length} bytes (${(raw.length / 1048576).toFixed(1)} MiB)`);
  console.log(`  compressed:   ${gz.length} bytes (${(gz.length / 1048576).toFixed(2)} MiB)`);
  console.log(`  first ts: ${lines[0].ts}, last ts: ${lines.at(-1).ts}`);
  console.log(`  first canned-reply lines (1-based): ${cannedLines.slice(0, 2).join(", ")}`);
  console.log(`  lines whose latest reply is canned: ${cannedLines.length}`);
  console.log(
    `  judge spend (doc prices): $${cost.toFixed(2)} total, $${stuckCost.toFixed(2)} on canned turns`,
  );
  for (const [k, n] of keys) console.log(`  ${k}: ${n} lines`);

  const small = buildSmall();
  writeFileSync(join(HERE, "small.jsonl"), `${small.join("\n")}\n`);
  const smallCanned = [];
  small.forEach((s, i) => {
    try {
      const o = JSON.parse(s);
      if (o.session.assistant_messages.at(-1) === CANNED) smallCanned.push(i + 1);
    } catch {}
  });
  console.log("small.jsonl");
  console.log(`  lines: ${small.length} (bad: 9 invalid JSON, 21 negative output_tokens)`);
  console.log(`  canned-reply lines: ${smallCanned.join(", ")}`);
}

main();
