export type {
  MysqlConnectionLike,
  MysqlPoolLike,
  PoolConnectionOf,
} from "./mysql.js";
export {
  DEFAULT_TABLES,
  type MysqlMigrateOptions,
  type MysqlTablesOptions,
  migrate,
  quoteIdentifier,
  schemaSql,
  schemaStatements,
} from "./schema.js";
export {
  createMysqlIdempotencyStore,
  type MysqlIdempotencyStore,
  type MysqlIdempotencyStoreOptions,
} from "./store.js";
export {
  createTransactionalHandlers,
  type TransactionalHandlers,
  type TransactionalHandlersOptions,
  type TransactionalReceiverOptions,
} from "./transactional.js";
