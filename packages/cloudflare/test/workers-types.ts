// Type-checked only (tsc, no test run): the package's structural types accept what
// @cloudflare/workers-types (and `wrangler types`) declare for a binding, a Durable Object and a
// D1 database (or a D1 session).
import type {
  D1Database,
  DurableObjectNamespace,
  DurableObjectState,
  DurableObjectStorage,
} from "@cloudflare/workers-types";
import {
  createD1IdempotencyStore,
  createDurableObjectIdempotencyStore,
  type DurableObjectStorageLike,
  MappaIdempotencyObject,
} from "../src/index.js";

declare const namespace: DurableObjectNamespace;
declare const state: DurableObjectState;
declare const storage: DurableObjectStorage;
declare const database: D1Database;

export const store = createDurableObjectIdempotencyStore(namespace, { name: "mappa-webhooks" });
export const object = new MappaIdempotencyObject(state, {});
export const storageLike: DurableObjectStorageLike = storage;
export const d1Store = createD1IdempotencyStore({ database });
export const d1SessionStore = createD1IdempotencyStore({ database: database.withSession() });
