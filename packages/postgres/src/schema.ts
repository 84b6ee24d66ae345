import { createHash } from "node:crypto";
import { invalidOptions } from "./pg.js";

/**
 * Where the tables live. Every API of this package takes these three names.
 *
 * @example
 * ```ts
 * const tables: PostgresTablesOptions = { schema: "billing", eventsTable: "mappa_events" };
 * await migrate({ pool, ...tables });
 * const inbox = createInbox({ pool, ...tables });
 * ```
 */
export interface PostgresTablesOptions {
  /** The schema of both tables. Default `"mappa_webhooks"`. */
  schema?: string;
  /** Inbox events and the done marks of transactional handlers. Default `"events"`. */
  eventsTable?: string;
  /** The shared idempotency store's keys. Default `"idempotency"`. */
  idempotencyTable?: string;
  /** The jobs `createMappaRecovery` tracks (created, outcome not handled yet). Default `"tracked_jobs"`. */
  trackedJobsTable?: string;
}

/**
 * The default names: `mappa_webhooks.events`, `mappa_webhooks.idempotency` and
 * `mappa_webhooks.tracked_jobs`.
 *
 * @example
 * ```ts
 * DEFAULT_TABLES.schema; // "mappa_webhooks"
 * ```
 */
export const DEFAULT_TABLES: Readonly<Required<PostgresTablesOptions>> = Object.freeze({
  schema: "mappa_webhooks",
  eventsTable: "events",
  idempotencyTable: "idempotency",
  trackedJobsTable: "tracked_jobs",
});

/** Quoted, ready-to-interpolate names derived from {@link PostgresTablesOptions}. */
export interface ResolvedTables {
  names: Required<PostgresTablesOptions>;
  /** `"schema"` */
  schema: string;
  /** `"schema"."events"` */
  events: string;
  /** `"schema"."idempotency"` */
  idempotency: string;
  /** `"schema"."tracked_jobs"` */
  trackedJobs: string;
  /** The NOTIFY channel of the events table (unquoted, for `pg_notify`). */
  channel: string;
  /** Index names, quoted. */
  indexes: { pending: string; done: string; failed: string; expires: string };
}

const MAX_IDENTIFIER_BYTES = 63;

/**
 * Quotes a Postgres identifier: `"` around it, inner `"` doubled. Any name is safe to
 * interpolate this way; names longer than 63 bytes (Postgres would cut them) and names with
 * a NUL byte are rejected.
 *
 * @example
 * ```ts
 * quoteIdentifier("events"); // "\"events\""
 * quoteIdentifier('my "odd" table'); // "\"my \"\"odd\"\" table\""
 * ```
 */
export function quoteIdentifier(name: string): string {
  if (typeof name !== "string" || name === "" || name.includes("\0")) {
    throw invalidOptions("", `${JSON.stringify(name)} is not a usable name for a schema or table.`);
  }
  if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
    throw invalidOptions(
      "",
      `the name ${JSON.stringify(name)} is longer than Postgres' ${MAX_IDENTIFIER_BYTES} bytes; pick a shorter one.`,
    );
  }
  return `"${name.replace(/"/g, '""')}"`;
}

function shortHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 8);
}

/** `<table><suffix>`, shortened with a hash when it would not fit Postgres' 63 bytes. */
function derivedName(table: string, suffix: string): string {
  const full = `${table}${suffix}`;
  if (Buffer.byteLength(full) <= MAX_IDENTIFIER_BYTES) return full;
  let head = table;
  while (Buffer.byteLength(`${head}_${shortHash(table)}${suffix}`) > MAX_IDENTIFIER_BYTES) {
    head = head.slice(0, -1);
  }
  return `${head}_${shortHash(table)}${suffix}`;
}

/** Resolves and quotes the names; throws `invalid_options` for an unusable one. */
export function resolveTables(options: PostgresTablesOptions = {}): ResolvedTables {
  const names = {
    schema: options.schema ?? DEFAULT_TABLES.schema,
    eventsTable: options.eventsTable ?? DEFAULT_TABLES.eventsTable,
    idempotencyTable: options.idempotencyTable ?? DEFAULT_TABLES.idempotencyTable,
    trackedJobsTable: options.trackedJobsTable ?? DEFAULT_TABLES.trackedJobsTable,
  };
  const schema = quoteIdentifier(names.schema);
  const channelName = `${names.schema}.${names.eventsTable}`;
  return {
    names,
    schema,
    events: `${schema}.${quoteIdentifier(names.eventsTable)}`,
    idempotency: `${schema}.${quoteIdentifier(names.idempotencyTable)}`,
    trackedJobs: `${schema}.${quoteIdentifier(names.trackedJobsTable)}`,
    channel:
      Buffer.byteLength(channelName) <= MAX_IDENTIFIER_BYTES
        ? channelName
        : `mappa_webhooks_${shortHash(channelName)}`,
    indexes: {
      pending: quoteIdentifier(derivedName(names.eventsTable, "_pending_idx")),
      done: quoteIdentifier(derivedName(names.eventsTable, "_done_idx")),
      failed: quoteIdentifier(derivedName(names.eventsTable, "_failed_idx")),
      expires: quoteIdentifier(derivedName(names.idempotencyTable, "_expires_idx")),
    },
  };
}

/**
 * The schema's SQL for these names: what {@link migrate} runs, and (with the default names)
 * exactly the file `@mappa-webhooks/postgres/schema.sql` shipped in the package, for teams
 * that run their own migration tool. Every statement is idempotent (`IF NOT EXISTS`).
 *
 * @example
 * ```ts
 * import { writeFileSync } from "node:fs";
 * writeFileSync("migrations/0007_mappa_webhooks.sql", schemaSql({ schema: "billing" }));
 * ```
 */
export function schemaSql(options: PostgresTablesOptions = {}): string {
  const t = resolveTables(options);
  return `-- @mappa-webhooks/postgres schema (version ${SCHEMA_VERSION}). migrate() runs exactly this, with your names.
-- Every statement is idempotent. Needs PostgreSQL 11 or later.

CREATE SCHEMA IF NOT EXISTS ${t.schema};

-- One row per event: the inbox (pending -> done, or failed after the last attempt) and the
-- done marks of transactional handlers, committed together with the handlers' writes.
CREATE TABLE IF NOT EXISTS ${t.events} (
  key text PRIMARY KEY,
  event_id text,
  type text NOT NULL,
  payload json NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  run_at timestamptz NOT NULL DEFAULT now(),
  last_error text,
  received_at timestamptz NOT NULL DEFAULT now(),
  done_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ${t.indexes.pending} ON ${t.events} (run_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS ${t.indexes.done} ON ${t.events} (done_at) WHERE status = 'done';
CREATE INDEX IF NOT EXISTS ${t.indexes.failed} ON ${t.events} (updated_at) WHERE status = 'failed';
-- The trace context (W3C traceparent, ...) of the delivery that stored the event, so the
-- worker's span links to it (schema 2; added to the events table of a schema 1).
ALTER TABLE ${t.events} ADD COLUMN IF NOT EXISTS trace_context jsonb;

-- The shared idempotency store: one row per event key, a claim (lease) or a completed mark.
CREATE TABLE IF NOT EXISTS ${t.idempotency} (
  key text PRIMARY KEY,
  token text NOT NULL,
  completed boolean NOT NULL DEFAULT false,
  expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ${t.indexes.expires} ON ${t.idempotency} (expires_at);

-- The jobs createMappaRecovery tracks: created, their outcome not handled yet (schema 2).
-- Listed in job id order, byte by byte (COLLATE "C"), whatever the database's collation.
CREATE TABLE IF NOT EXISTS ${t.trackedJobs} (
  job_id text COLLATE "C" PRIMARY KEY,
  tracked_at timestamptz NOT NULL
);

-- The schema version, read by migrate() (which also checks the tables' columns).
COMMENT ON TABLE ${t.events} IS '${SCHEMA_VERSION_MARK}${SCHEMA_VERSION}';
`;
}

/**
 * The version of the tables' shape this package creates and expects. 2 added the tracked jobs
 * table and the events' `trace_context` column; `migrate` on a schema 1 adds both (every
 * statement is `IF NOT EXISTS`).
 */
export const SCHEMA_VERSION = 2;
/** How the version is recorded: the events table's comment. */
export const SCHEMA_VERSION_MARK = "@mappa-webhooks/postgres schema ";

/** Columns this package reads and writes, with their types as `format_type` names them. */
export const EXPECTED_COLUMNS: Readonly<
  Record<"events" | "idempotency" | "trackedJobs", Record<string, string>>
> = Object.freeze({
  events: {
    key: "text",
    event_id: "text",
    type: "text",
    payload: "json",
    status: "text",
    attempts: "integer",
    run_at: "timestamp with time zone",
    last_error: "text",
    received_at: "timestamp with time zone",
    done_at: "timestamp with time zone",
    updated_at: "timestamp with time zone",
    trace_context: "jsonb",
  },
  idempotency: {
    key: "text",
    token: "text",
    completed: "boolean",
    expires_at: "timestamp with time zone",
  },
  trackedJobs: {
    job_id: "text",
    tracked_at: "timestamp with time zone",
  },
});
