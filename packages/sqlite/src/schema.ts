import { type SqliteConnection, sqliteError } from "./driver.js";

/**
 * The tables this package uses, in the database's main schema. Every API takes these names.
 *
 * @example
 * ```ts
 * const tables: SqliteTablesOptions = { eventsTable: "webhook_events" };
 * const tx = createTransactionalHandlers({ database: "./data/app.db", ...tables, on });
 * ```
 */
export interface SqliteTablesOptions {
  /** The done marks of transactional handlers, one row per event. Default `"mappa_webhooks_events"`. */
  eventsTable?: string;
  /** The idempotency store's keys. Default `"mappa_webhooks_idempotency"`. */
  idempotencyTable?: string;
  /**
   * The jobs `createMappaRecovery` tracks (created, outcome not handled yet). Default
   * `"mappa_webhooks_tracked_jobs"`.
   */
  trackedJobsTable?: string;
}

/**
 * The default table names.
 *
 * @example
 * ```ts
 * DEFAULT_TABLES.idempotencyTable; // "mappa_webhooks_idempotency"
 * ```
 */
export const DEFAULT_TABLES: Readonly<Required<SqliteTablesOptions>> = Object.freeze({
  eventsTable: "mappa_webhooks_events",
  idempotencyTable: "mappa_webhooks_idempotency",
  trackedJobsTable: "mappa_webhooks_tracked_jobs",
});

/** Quoted names, ready to interpolate. */
export interface ResolvedTables {
  names: Required<SqliteTablesOptions>;
  events: string;
  idempotency: string;
  trackedJobs: string;
  indexes: { expires: string; done: string };
}

/**
 * Quotes an SQLite identifier: `"` around it, inner `"` doubled, so any name is safe.
 *
 * @example
 * ```ts
 * quoteIdentifier('my "odd" table'); // "\"my \"\"odd\"\" table\""
 * ```
 */
export function quoteIdentifier(name: string): string {
  if (typeof name !== "string" || name === "" || name.includes("\0") || name.length > 200) {
    throw sqliteError(
      "invalid_options",
      `${JSON.stringify(name)} is not a usable table name: give 1 to 200 characters without a NUL byte.`,
    );
  }
  return `"${name.replace(/"/g, '""')}"`;
}

export function resolveTables(options: SqliteTablesOptions = {}): ResolvedTables {
  const names = {
    eventsTable: options.eventsTable ?? DEFAULT_TABLES.eventsTable,
    idempotencyTable: options.idempotencyTable ?? DEFAULT_TABLES.idempotencyTable,
    trackedJobsTable: options.trackedJobsTable ?? DEFAULT_TABLES.trackedJobsTable,
  };
  return {
    names,
    events: quoteIdentifier(names.eventsTable),
    idempotency: quoteIdentifier(names.idempotencyTable),
    trackedJobs: quoteIdentifier(names.trackedJobsTable),
    indexes: {
      expires: quoteIdentifier(`${names.idempotencyTable}_expires_idx`),
      done: quoteIdentifier(`${names.eventsTable}_done_idx`),
    },
  };
}

/**
 * The schema's SQL for these names: what {@link migrate} (and every factory, unless
 * `migrate: false`) runs. Every statement is idempotent (`IF NOT EXISTS`). Times are
 * milliseconds since the epoch.
 *
 * @example
 * ```ts
 * import { writeFileSync } from "node:fs";
 * writeFileSync("migrations/0007_mappa_webhooks.sql", schemaSql());
 * ```
 */
export function schemaSql(options: SqliteTablesOptions = {}): string {
  const t = resolveTables(options);
  return `-- @mappa-webhooks/sqlite schema (version 2). Every statement is idempotent.

-- One row per event handled by transactional handlers: its done mark, committed in the same
-- transaction as the handler's writes, and the failed attempts recorded outside it.
CREATE TABLE IF NOT EXISTS ${t.events} (
  key TEXT PRIMARY KEY NOT NULL,
  event_id TEXT,
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  received_at INTEGER NOT NULL,
  done_at INTEGER,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ${t.indexes.done} ON ${t.events} (done_at) WHERE status = 'done';

-- The idempotency store: one row per event key, a claim (lease) or a completed mark.
CREATE TABLE IF NOT EXISTS ${t.idempotency} (
  key TEXT PRIMARY KEY NOT NULL,
  token TEXT NOT NULL,
  completed INTEGER NOT NULL DEFAULT 0,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ${t.indexes.expires} ON ${t.idempotency} (expires_at);

-- The jobs createMappaRecovery tracks: created, their outcome not handled yet (version 2;
-- added to an existing file by the next migrate). Listed in job id order (BINARY: byte order).
CREATE TABLE IF NOT EXISTS ${t.trackedJobs} (
  job_id TEXT PRIMARY KEY NOT NULL,
  tracked_at INTEGER NOT NULL
);
`;
}

/** Creates the tables on `connection` if missing (in one transaction). */
export function migrateConnection(
  connection: SqliteConnection,
  options: SqliteTablesOptions,
): void {
  connection.exec("BEGIN IMMEDIATE");
  try {
    connection.exec(schemaSql(options));
    connection.exec("COMMIT");
  } catch (error) {
    try {
      connection.exec("ROLLBACK");
    } catch {
      // Nothing was begun.
    }
    throw error;
  }
}
