export {
  createD1IdempotencyStore,
  type D1DatabaseLike,
  type D1IdempotencyStore,
  type D1IdempotencyStoreOptions,
  type D1StatementLike,
} from "./d1.js";
export {
  type DurableObjectStateLike,
  type DurableObjectStorageLike,
  MappaIdempotencyObject,
} from "./object.js";
export { DEFAULT_OBJECT_NAME, MAX_KEY_BYTES } from "./protocol.js";
export {
  createDurableObjectIdempotencyStore,
  type DurableObjectIdempotencyStore,
  type DurableObjectIdempotencyStoreOptions,
  type DurableObjectNamespaceLike,
  type DurableObjectStubLike,
  type RpcInit,
  type RpcResponse,
} from "./store.js";
