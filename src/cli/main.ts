#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { checkVariableNames } from "../config/variables.js";
import { isJudgeGuardError } from "../errors.js";
import { printable } from "../util/printable.js";
import { exitStatus } from "./errors.js";
import { explainCommand } from "./explain.js";
import { replayCommand } from "./replay.js";
import { reportCommand } from "./report.js";
import { resetSessionsCommand } from "./reset-sessions.js";
import { serveCommand } from "./serve.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

/**
 * Exit statuses: 0 ok, 1 data problems (bad lines, unreadable ledger), 2 usage or configuration
 * errors; an error that reaches here gets the status of its code (`EXIT_STATUS`, cli/errors.ts).
 */
async function main(argv: string[]): Promise<number> {
  const program = new Command()
    .name("judge-guard")
    .description("Stops LLM judges from burning money on stuck agent sessions.")
    .version(pkg.version)
    .option("--verbose", "print stack traces on errors")
    // --verbose applies to every command: list it in each one's help too.
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    .showHelpAfterError("(run judge-guard --help for usage)")
    // Before any command: a misspelt JUDGE_GUARD_* variable must not be silently ignored.
    .hook("preAction", () => checkVariableNames(process.env));

  let code = 0;
  program
    .command("replay")
    .description(
      "replay recorded judge traffic (JSON Lines, .gz accepted, - for stdin) and show what the guard would have done",
    )
    .argument("<file>", "one judge request per line: {ts, judge, model, session, usage?}")
    .option(
      "--db <path>",
      "keep the replay's ledger in this SQLite file, its folders created (default: a temporary one)",
    )
    .option("--decisions <file>", "write one JSON decision per input line to this file")
    .option("--json", "print the summary as one JSON object")
    .option("--no-progress", "no progress bar, even on a terminal")
    .option("--explain <key>", "also show, reply by reply, why this session key was or was not judged stuck")
    .option("--append", "add to the decisions --db holds already (without it, such a --db is refused)")
    .action(async (file: string, opts) => {
      code = await replayCommand(file, opts);
    });

  program
    .command("explain")
    .description(
      "why a session key was judged stuck: its episodes and the evidence each opened on, from the ledger",
    )
    .argument("<session-key>", "the session key, e.g. slack:C04:1712345678.1234")
    .option("--db <path>", "the ledger (default: JUDGE_GUARD_DB, or ./data/judge-guard.db)")
    .option("--json", "print the history as JSON")
    .action((key: string, opts) => {
      code = explainCommand(key, opts);
    });

  program
    .command("serve")
    .description("run the guard as an HTTP service next to the agent (JUDGE_GUARD_TOKEN for bearer auth)")
    .option("--host <address>", "address to listen on (non-loopback needs JUDGE_GUARD_TOKEN)", "127.0.0.1")
    .option("--port <port>", "port (0 picks a free one)", "8787")
    .option(
      "--log-format <format>",
      "the guard's log records on stderr: text, or json (default: text on a terminal, json otherwise)",
    )
    .action(async (opts) => {
      code = await serveCommand(opts);
    });

  program
    .command("report")
    .description(
      "the cost report: judge calls made and skipped, USD charged and saved, per key, judge, model and period",
    )
    .option("--db <path>", "the ledger (default: JUDGE_GUARD_DB, or ./data/judge-guard.db)")
    .option("--since <time>", "start of the range: 24h, 7d, 90m back, or an ISO time", "24h")
    .option("--until <time>", "end of the range (default: now)")
    .option("--session-key <key>", "one session key only")
    .option("--format <format>", "table, json, csv or html", "table")
    .option("--out <file>", "write the report to this file instead of standard output (html needs it)")
    .option("--by <what>", "csv rows: key (default) or day")
    .action((opts) => {
      code = reportCommand(opts);
    });

  program
    .command("reset-sessions")
    .description(
      "clear stale SDK sessions in Phantom's database so the next message starts a fresh one (safe while Phantom runs)",
    )
    .option("--phantom-db <path>", "Phantom's database, e.g. data/phantom.db")
    .option("--session-key <key>", "reset this key only (e.g. cli:cli:local)")
    .option(
      "--stale-before <time>",
      'reset every active session last active before this time: ISO-8601, 24h (ago), or "now"',
    )
    .option("--all-active", "reset every active session")
    .option("--dry-run", "list what would change, change nothing")
    .option("--if-exists", "a database that does not exist yet (first boot) is nothing to reset")
    .option("--json", "print the result as JSON")
    .action((opts) => {
      code = resetSessionsCommand(opts);
    });

  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.exitCode === 0
        ? 0
        : 2;
    }
    const message = (e as Error)?.message ?? String(e);
    process.stderr.write(`judge-guard: ${printable(message)}\n`);
    // Errors we raise on purpose (each with a code) say all there is to say; a stack helps only
    // with the others.
    if (!isJudgeGuardError(e)) {
      if (argv.includes("--verbose") && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
      else process.stderr.write("(run with --verbose for details)\n");
    }
    return exitStatus(e);
  }
  return code;
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`judge-guard: ${printable(String((e as Error)?.message ?? e))}\n`);
    process.exitCode = 1;
  },
);
