export {
  countEvents,
  type EventCounts,
  getEvent,
  type ListFailedOptions,
  listFailed,
  migrate,
  type PostgresAdminOptions,
  type PruneOptions,
  type PruneResult,
  prune,
  type ReplayOptions,
  type ReplayResult,
  readBacklog,
  replayFailed,
  type StoredEvent,
} from "./admin.js";
export { createInbox, type Inbox, type InboxOptions, type InboxReceiverOptions } from "./inbox.js";
export {
  type PgClientLike,
  type PgNotification,
  type PgPoolLike,
  type PgQueryResult,
  type PoolClientOf,
  singleClientPool,
} from "./pg.js";
export {
  DEFAULT_TABLES,
  type PostgresTablesOptions,
  quoteIdentifier,
  schemaSql,
} from "./schema.js";
export {
  createPostgresIdempotencyStore,
  type PostgresIdempotencyStore,
  type PostgresIdempotencyStoreOptions,
} from "./store.js";
export {
  createTransactionalHandlers,
  type TransactionalHandlers,
  type TransactionalHandlersOptions,
  type TransactionalReceiverOptions,
} from "./transactional.js";
export {
  createInboxWorker,
  exponentialBackoff,
  type InboxBackoff,
  type InboxWorker,
  type InboxWorkerErrorInfo,
  type InboxWorkerOptions,
  type InboxWorkerStats,
} from "./worker.js";
