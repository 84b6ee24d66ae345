export {
  DEFAULT_BUSY_TIMEOUT_MS,
  defaultDriver,
  type OpenSqliteOptions,
  openSqliteDatabase,
  type SqliteConnection,
  type SqliteDriverName,
  type SqliteRunResult,
  type SqliteValue,
  sqliteConnection,
} from "./driver.js";
export { migrate, type SqliteMigrateOptions } from "./migrate.js";
export type { SqliteDatabaseOptions } from "./open.js";
export { DEFAULT_TABLES, quoteIdentifier, type SqliteTablesOptions, schemaSql } from "./schema.js";
export {
  createSqliteIdempotencyStore,
  type SqliteIdempotencyStore,
  type SqliteIdempotencyStoreOptions,
} from "./store.js";
export {
  createTransactionalHandlers,
  type SqliteTransaction,
  type TransactionalHandlers,
  type TransactionalHandlersOptions,
  type TransactionalReceiverOptions,
} from "./transactional.js";
