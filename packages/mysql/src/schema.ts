import {
  checkPool,
  errorMessage,
  invalidOptions,
  type MysqlPoolLike,
  mysqlError,
} from "./mysql.js";

/**
 * The tables this package uses, in the pool's database. Every API takes these names.
 *
 * @example
 * ```ts
 * const tables: MysqlTablesOptions = { eventsTable: "webhook_events" };
 * await migrate({ pool, ...tables });
 * ```
 */
export interface MysqlTablesOptions {
  /** The done marks of transactional handlers. Default `"mappa_webhooks_events"`. */
  eventsTable?: string;
  /** The idempotency store's keys. Default `"mappa_webhooks_idempotency"`. */
  idempotencyTable?: string;
  /**
   * The jobs `createMappaRecovery` tracks (created, outcome not handled yet). Default
   * `"mappa_webhooks_tracked_jobs"`.
   */
  trackedJobsTable?: string;
}

/** The longest job id tracked, in UTF-8 bytes (255 characters of up to 4 bytes). */
export const MAX_JOB_ID_BYTES = 1020;

/**
 * The default table names.
 *
 * @example
 * ```ts
 * DEFAULT_TABLES.eventsTable; // "mappa_webhooks_events"
 * ```
 */
export const DEFAULT_TABLES: Readonly<Required<MysqlTablesOptions>> = Object.freeze({
  eventsTable: "mappa_webhooks_events",
  idempotencyTable: "mappa_webhooks_idempotency",
  trackedJobsTable: "mappa_webhooks_tracked_jobs",
});

export interface ResolvedTables {
  names: Required<MysqlTablesOptions>;
  events: string;
  idempotency: string;
  trackedJobs: string;
}

/**
 * Quotes a MySQL identifier with backticks (inner backticks doubled); names longer than
 * MySQL's 64 characters are rejected.
 *
 * @example
 * ```ts
 * quoteIdentifier("events"); // "`events`"
 * ```
 */
export function quoteIdentifier(name: string): string {
  if (
    typeof name !== "string" ||
    name === "" ||
    name.includes("\0") ||
    name.length > 64 ||
    /\s$/.test(name)
  ) {
    throw invalidOptions(
      "@mappa-webhooks/mysql",
      `${JSON.stringify(name)} is not a usable table name: give 1 to 64 characters, no NUL byte, no trailing space.`,
    );
  }
  return `\`${name.replace(/`/g, "``")}\``;
}

export function resolveTables(options: MysqlTablesOptions = {}): ResolvedTables {
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
  };
}

/**
 * The schema's SQL for these names, one statement per array entry: what {@link migrate} runs.
 * Every statement is idempotent (`IF NOT EXISTS`). Needs MySQL 8.0+ or MariaDB 10.5+ (InnoDB).
 *
 * @example
 * ```ts
 * for (const statement of schemaStatements()) await pool.query(statement);
 * ```
 */
export function schemaStatements(options: MysqlTablesOptions = {}): string[] {
  const t = resolveTables(options);
  return [
    // One row per event handled by transactional handlers: its done mark, committed in the same
    // transaction as the handler's writes, and failed attempts recorded after the rollback.
    `CREATE TABLE IF NOT EXISTS ${t.events} (
  event_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  event_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  type VARCHAR(255) NOT NULL,
  payload LONGTEXT NOT NULL,
  status VARCHAR(16) NOT NULL DEFAULT 'pending',
  attempts INT NOT NULL DEFAULT 0,
  last_error TEXT NULL,
  received_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  done_at DATETIME(3) NULL,
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (event_key),
  KEY status_done_at (status, done_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    // The idempotency store: one row per event key, a claim (lease) or a completed mark;
    // expires_at in milliseconds since the epoch on the database's clock.
    `CREATE TABLE IF NOT EXISTS ${t.idempotency} (
  event_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  token CHAR(36) NOT NULL,
  completed TINYINT(1) NOT NULL DEFAULT 0,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (event_key),
  KEY expires_at (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    // The jobs createMappaRecovery tracks: created, their outcome not handled yet (version 2;
    // added to an existing database by the next migrate). The id is its UTF-8 bytes, so any id
    // (trailing spaces, case) is its own and the list is in byte order; tracked_at in unix ms.
    `CREATE TABLE IF NOT EXISTS ${t.trackedJobs} (
  job_id VARBINARY(${MAX_JOB_ID_BYTES}) NOT NULL,
  tracked_at BIGINT NOT NULL,
  PRIMARY KEY (job_id)
) ENGINE=InnoDB`,
  ];
}

/**
 * The schema as one SQL text (statements ended by `;`), for teams that run their own
 * migration tool.
 *
 * @example
 * ```ts
 * import { writeFileSync } from "node:fs";
 * writeFileSync("migrations/0007_mappa_webhooks.sql", schemaSql());
 * ```
 */
export function schemaSql(options: MysqlTablesOptions = {}): string {
  return `-- @mappa-webhooks/mysql schema (version 2). Idempotent. MySQL 8.0+ or MariaDB 10.5+.\n\n${schemaStatements(options).join(";\n\n")};\n`;
}

/**
 * Options of {@link migrate}.
 *
 * @example
 * ```ts
 * const options: MysqlMigrateOptions = { pool };
 * ```
 */
export interface MysqlMigrateOptions extends MysqlTablesOptions {
  pool: MysqlPoolLike;
}

/**
 * Creates the tables in the pool's database if missing. Idempotent: every instance can run it
 * at start.
 *
 * @example
 * ```ts
 * import mysql from "mysql2/promise";
 * import { migrate } from "@mappa-webhooks/mysql";
 * await migrate({ pool: mysql.createPool(process.env.MYSQL_URL!) });
 * ```
 */
export async function migrate(options: MysqlMigrateOptions): Promise<void> {
  if (options === null || typeof options !== "object")
    throw invalidOptions("migrate", "needs `{ pool }`.");
  checkPool("migrate", options.pool);
  for (const statement of schemaStatements(options)) {
    try {
      await options.pool.query(statement);
    } catch (error) {
      throw mysqlError(
        "idempotency_store_failed",
        `migrate could not create the tables: ${errorMessage(error)}. The user needs CREATE on the pool's database.`,
        error,
      );
    }
  }
}
