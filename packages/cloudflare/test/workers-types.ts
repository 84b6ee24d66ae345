// Type-checked only (tsc, no test run): the package's structural types accept what
// @cloudflare/workers-types (and `wrangler types`) declare for a binding and a Durable Object.
import type {
  DurableObjectNamespace,
  DurableObjectState,
  DurableObjectStorage,
} from "@cloudflare/workers-types";
import {
  createDurableObjectIdempotencyStore,
  type DurableObjectStorageLike,
  MappaIdempotencyObject,
} from "../src/index.js";

declare const namespace: DurableObjectNamespace;
declare const state: DurableObjectState;
declare const storage: DurableObjectStorage;

export const store = createDurableObjectIdempotencyStore(namespace, { name: "mappa-webhooks" });
export const object = new MappaIdempotencyObject(state, {});
export const storageLike: DurableObjectStorageLike = storage;
