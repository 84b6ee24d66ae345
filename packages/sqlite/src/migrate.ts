import { errorMessage, sqliteError } from "./driver.js";
import {
  checkDatabaseOptions,
  hintFor,
  lazyConnection,
  type SqliteDatabaseOptions,
} from "./open.js";

/**
 * Options of {@link migrate}: where the database is, and the table names.
 *
 * @example
 * ```ts
 * const options: SqliteMigrateOptions = { database: "./data/mappa-webhooks.db" };
 * ```
 */
export type SqliteMigrateOptions = Omit<SqliteDatabaseOptions, "migrate">;

/**
 * Creates the tables if missing (idempotent, safe to run from every process at start). The
 * factories do it themselves on first use unless `migrate: false`; call this when you turned
 * that off, e.g. to create the tables at deploy time. Opens and closes its own connection when
 * given a file name. On a file made by an older version it adds what is new (the tracked jobs
 * table of `createMappaRecovery`) and keeps every row.
 *
 * @example
 * ```ts
 * import { migrate } from "@mappa-webhooks/sqlite";
 * await migrate({ database: "./data/mappa-webhooks.db" });
 * ```
 */
export async function migrate(options: SqliteMigrateOptions): Promise<void> {
  checkDatabaseOptions("migrate", options);
  const connect = lazyConnection({ ...options, migrate: true });
  try {
    const connection = await connect();
    if (typeof options.database === "string") connection.close();
  } catch (error) {
    if ((error as { code?: unknown }).code === "invalid_options") throw error;
    throw sqliteError(
      "idempotency_store_failed",
      `migrate could not create the tables: ${errorMessage(error)}.${hintFor(error)}`,
      error,
    );
  }
}
