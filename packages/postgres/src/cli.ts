#!/usr/bin/env node
// mappa-webhooks-postgres: migrate, inspect, replay and prune the inbox from a shell.
import { parseArgs } from "node:util";
import {
  countEvents,
  listFailed,
  migrate,
  type PostgresAdminOptions,
  prune,
  replayFailed,
  type StoredEvent,
} from "./admin.js";
import { errorMessage, type PgPoolLike } from "./pg.js";
import { resolveTables, schemaSql } from "./schema.js";

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

export const HELP = `mappa-webhooks-postgres: the Postgres inbox of Mappa webhooks, from a shell.

Usage
  mappa-webhooks-postgres <command> [options]

Commands
  migrate            Create the schema, tables and indexes if missing (safe to repeat).
                     --print shows the SQL instead, without connecting.
  stats              Count events by status (pending, done, failed).
  failed             List the events parked as failed, newest first.
  replay [key...]    Move these failed events (or every one, with --all) back to pending,
                     attempts reset: a running worker handles them next.
  prune              Delete done events older than --days (default 30) and expired
                     idempotency keys. Pending and failed events are never deleted.

Options
  --database-url <url>        Connection string (default: $DATABASE_URL)
  --schema <name>             Schema (default: mappa_webhooks)
  --events-table <name>       Events table (default: events)
  --idempotency-table <name>  Idempotency table (default: idempotency)
  --limit <n>                 failed: most events listed (default 100)
  --all                       replay: every failed event
  --days <n>                  prune: age in days of the done events to delete (default 30)
  --print                     migrate: print the SQL only
  --json                      One JSON document on stdout instead of text
  -h, --help                  Show this help

Exit status: 0 done; 1 the database failed (unreachable, no tables), or a key to replay is not
parked as failed; 2 bad usage.

Examples
  mappa-webhooks-postgres migrate --database-url postgres://postgres@127.0.0.1:5432/app
  mappa-webhooks-postgres failed --json
  mappa-webhooks-postgres replay evt_123 evt_456
  mappa-webhooks-postgres replay --all
  mappa-webhooks-postgres prune --days 14`;

const OPTIONS = {
  "database-url": { type: "string" },
  schema: { type: "string" },
  "events-table": { type: "string" },
  "idempotency-table": { type: "string" },
  limit: { type: "string" },
  all: { type: "boolean" },
  days: { type: "string" },
  print: { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const COMMANDS = new Set(["migrate", "stats", "failed", "replay", "prune"]);

class UsageError extends Error {}

/** Where the CLI writes; replaced in tests. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
  /** Makes the pool; default: `pg`'s Pool. */
  createPool?(connectionString: string): Promise<PgPoolLike & { end(): Promise<void> }>;
}

function positiveInteger(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  // Decimal digits only: Number() would also take "0x10", "1e3" or " 7 ".
  const number = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(number) || number < 1) {
    throw new UsageError(`${flag} needs a whole number of at least 1, got "${value}"`);
  }
  return number;
}

function days(value: string | undefined): number {
  if (value === undefined) return 30;
  const number = /^[0-9]+(\.[0-9]+)?$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isFinite(number)) {
    throw new UsageError(`--days needs a number of days >= 0 (e.g. 30 or 0.5), got "${value}"`);
  }
  return number;
}

/** A connection string `pg` understands: a postgres:// URL (or a socket directory path). */
function databaseUrl(value: string): string {
  if (value.startsWith("/")) return value;
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "postgres:" && url.protocol !== "postgresql:")) {
    throw new UsageError(
      `--database-url (or DATABASE_URL) must be a postgres:// URL, e.g. postgres://user:password@127.0.0.1:5432/app, got "${value}"`,
    );
  }
  return value;
}

/** Error messages without the brand prefix the core adds (the CLI prints its own `error:`). */
function plain(error: unknown): string {
  return errorMessage(error).replace(/^@mappa-webhooks: /, "");
}

async function defaultPool(
  connectionString: string,
): Promise<PgPoolLike & { end(): Promise<void> }> {
  let pg: { default?: { Pool: unknown }; Pool?: unknown };
  try {
    pg = (await import("pg")) as typeof pg;
  } catch {
    throw new Error("the `pg` package is not installed: npm install pg");
  }
  const Pool = (pg.Pool ?? pg.default?.Pool) as new (
    config: object,
  ) => PgPoolLike & {
    end(): Promise<void>;
    on(event: "error", listener: (error: Error) => void): unknown;
  };
  const pool = new Pool({ connectionString, max: 2, connectionTimeoutMillis: 10_000 });
  pool.on("error", () => {});
  return pool;
}

function formatFailed(events: StoredEvent[]): string {
  if (events.length === 0) return "No failed events.";
  const lines = events.map(
    (event) =>
      `${event.key}  ${event.type}  attempts=${event.attempts}  failed ${event.updatedAt.toISOString()}\n    ${event.lastError ?? ""}`,
  );
  return `${events.length} failed event${events.length === 1 ? "" : "s"} (newest first):\n${lines.join("\n")}\n\nReplay with: mappa-webhooks-postgres replay <key...> (or --all)`;
}

/** Runs the CLI with `argv` (without node and the script); resolves the exit status. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<
    typeof parseArgs<{
      args: string[];
      options: typeof OPTIONS;
      allowPositionals: true;
      strict: true;
    }>
  >;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    io.err(`error: ${errorMessage(error)}\nRun mappa-webhooks-postgres --help for usage.`);
    return EXIT_USAGE;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help === true || command === "help") {
    io.out(HELP);
    return EXIT_OK;
  }
  const json = values.json === true;
  try {
    if (command === undefined)
      throw new UsageError("a command is required (migrate, stats, failed, replay or prune)");
    if (!COMMANDS.has(command)) throw new UsageError(`unknown command "${command}"`);
    if (command !== "replay" && rest.length > 0) {
      throw new UsageError(`unexpected argument: ${rest.join(" ")}`);
    }
    const tables = {
      ...(values.schema === undefined ? {} : { schema: values.schema }),
      ...(values["events-table"] === undefined ? {} : { eventsTable: values["events-table"] }),
      ...(values["idempotency-table"] === undefined
        ? {}
        : { idempotencyTable: values["idempotency-table"] }),
    };
    try {
      resolveTables(tables);
    } catch (error) {
      throw new UsageError(plain(error).replace(/^@mappa-webhooks\/postgres: /, ""));
    }
    if (command === "migrate" && values.print === true) {
      io.out(schemaSql(tables).trimEnd());
      return EXIT_OK;
    }
    if (command === "replay" && values.all !== true && rest.length === 0) {
      throw new UsageError("replay needs the keys of the events to replay, or --all");
    }
    if (command === "replay" && values.all === true && rest.length > 0) {
      throw new UsageError("replay takes keys or --all, not both");
    }
    const limit = positiveInteger("--limit", values.limit, 100);
    const olderThanDays = days(values.days);
    const given = values["database-url"] ?? io.env.DATABASE_URL;
    if (given === undefined || given === "") {
      throw new UsageError("no database: pass --database-url <url> or set DATABASE_URL");
    }
    const url = databaseUrl(given);

    const pool = await (io.createPool ?? defaultPool)(url);
    const options: PostgresAdminOptions = { pool, ...tables };
    try {
      switch (command) {
        case "migrate": {
          await migrate(options);
          const where = `${tables.schema ?? "mappa_webhooks"}`;
          io.out(
            json
              ? JSON.stringify({ migrated: true, schema: where })
              : `Schema "${where}" is up to date.`,
          );
          return EXIT_OK;
        }
        case "stats": {
          const counts = await countEvents(options);
          io.out(
            json
              ? JSON.stringify(counts)
              : `pending ${counts.pending}\ndone    ${counts.done}\nfailed  ${counts.failed}`,
          );
          return EXIT_OK;
        }
        case "failed": {
          const events = await listFailed({ ...options, limit });
          io.out(json ? JSON.stringify({ failed: events }) : formatFailed(events));
          return EXIT_OK;
        }
        case "replay": {
          const result = await replayFailed(
            values.all === true ? options : { ...options, keys: rest },
          );
          if (json) io.out(JSON.stringify(result));
          else {
            io.out(
              `Replayed ${result.replayed.length} event${result.replayed.length === 1 ? "" : "s"}${result.replayed.length > 0 ? `: ${result.replayed.join(", ")}` : ""}.`,
            );
            if (result.notFailed.length > 0) {
              io.err(`Not parked as failed (left alone): ${result.notFailed.join(", ")}`);
            }
          }
          return result.notFailed.length > 0 ? EXIT_FAILED : EXIT_OK;
        }
        default: {
          const result = await prune({ ...options, olderThanDays });
          io.out(
            json
              ? JSON.stringify(result)
              : `Deleted ${result.events} done event${result.events === 1 ? "" : "s"} older than ${olderThanDays} days and ${result.idempotencyKeys} expired idempotency key${result.idempotencyKeys === 1 ? "" : "s"}.`,
          );
          return EXIT_OK;
        }
      }
    } finally {
      await pool.end().catch(() => {});
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`error: ${error.message}\nRun mappa-webhooks-postgres --help for usage.`);
      return EXIT_USAGE;
    }
    const message = plain(error);
    io.err(json ? JSON.stringify({ error: message }) : `error: ${message}`);
    return EXIT_FAILED;
  }
}

const isEntry = (() => {
  const script = process.argv[1];
  if (script === undefined) return false;
  return /mappa-webhooks-postgres$|[\\/]cli\.[cm]?js$/.test(script);
})();

if (isEntry) {
  main(process.argv.slice(2), {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    env: process.env,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`error: ${plain(error)}\n`);
      process.exitCode = EXIT_FAILED;
    },
  );
}
