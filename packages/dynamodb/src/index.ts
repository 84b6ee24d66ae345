export {
  createDynamoDbIdempotencyStore,
  type DynamoDbIdempotencyStore,
  type DynamoDbIdempotencyStoreOptions,
} from "./store.js";
export {
  type EnsureTableOptions,
  type EnsureTableResult,
  ensureTable,
  PARTITION_KEY,
  SORT_KEY,
  TTL_ATTRIBUTE,
  tableDefinition,
} from "./table.js";
