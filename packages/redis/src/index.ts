export type { RedisScript } from "./scripts.js";
export {
  createRedisIdempotencyStore,
  type IoRedisLikeClient,
  type RedisIdempotencyStore,
  type RedisIdempotencyStoreOptions,
  type RedisScriptRunner,
} from "./store.js";
