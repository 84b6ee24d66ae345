import type {
  ClaimResult,
  IdempotencyStore,
  JobTrackingStore,
  TrackedJob,
} from "@mappa-webhooks/core";
import {
  byteLength,
  DEFAULT_OBJECT_NAME,
  errorMessage,
  invalidOptions,
  MAX_KEY_BYTES,
  RPC_URL,
  type RpcRequest,
  storeFailed,
} from "./protocol.js";

/** A Durable Object stub: what `namespace.get(id)` returns. */
export interface DurableObjectStubLike {
  fetch(input: string, init: RpcInit): Promise<RpcResponse>;
}

/** What the store sends with each call (a POST of JSON). */
export interface RpcInit {
  method: "POST";
  headers: Record<string, string>;
  body: string;
}

/** What the store reads of an answer (a `Response` of any runtime has it). */
export interface RpcResponse {
  readonly ok: boolean;
  readonly status: number;
  text(): Promise<string>;
}

/**
 * A Durable Object namespace binding (`env.MAPPA_IDEMPOTENCY`), as workerd gives it to the
 * Worker, or Miniflare's `getDurableObjectNamespace(...)` in Node tests.
 */
export interface DurableObjectNamespaceLike {
  idFromName(name: string): unknown;
  get(id: never): DurableObjectStubLike;
}

/**
 * Options of {@link createDurableObjectIdempotencyStore}.
 *
 * @example
 * ```ts
 * const options: DurableObjectIdempotencyStoreOptions = { name: "mappa-webhooks", timeoutMs: 5000 };
 * ```
 */
export interface DurableObjectIdempotencyStoreOptions {
  /**
   * The name of the one object instance (`namespace.idFromName(name)`) every key and tracked
   * job lives in. Default `"mappa-webhooks"`. Receivers that must not share keys (two
   * environments on one namespace) use different names.
   */
  name?: string;
  /** Longest one call may take before `idempotency_store_failed` (503). Default 5000 ms. */
  timeoutMs?: number;
  /**
   * The clock for leases and TTLs, in milliseconds, sent with each call. Default: the
   * object's clock. Pass one only in tests.
   */
  now?: () => number;
}

/**
 * The Durable Object idempotency store: an {@link IdempotencyStore} with `renew`, and the
 * {@link JobTrackingStore} of `createMappaRecovery`.
 */
export interface DurableObjectIdempotencyStore
  extends Required<IdempotencyStore>,
    JobTrackingStore {
  /** The name of the object instance it calls. */
  readonly name: string;
}

const DEFAULT_TIMEOUT_MS = 5000;
const API = "createDurableObjectIdempotencyStore";
const BINDING_FIX =
  'Bind the Durable Object in wrangler.toml [[durable_objects.bindings]] (name = "MAPPA_IDEMPOTENCY", class_name = "MappaIdempotencyObject"), export MappaIdempotencyObject from your Worker, and pass env.MAPPA_IDEMPOTENCY.';

function checkNamespace(namespace: unknown): asserts namespace is DurableObjectNamespaceLike {
  const candidate = namespace as Partial<DurableObjectNamespaceLike> | null | undefined;
  if (
    candidate === null ||
    typeof candidate !== "object" ||
    typeof candidate.idFromName !== "function" ||
    typeof candidate.get !== "function"
  ) {
    const got =
      namespace === undefined
        ? "undefined (is the binding missing from this environment?)"
        : namespace === null
          ? "null"
          : `a ${typeof namespace} without idFromName and get`;
    throw invalidOptions(API, `needs a Durable Object namespace, got ${got}. ${BINDING_FIX}`);
  }
}

/**
 * An {@link IdempotencyStore} on a Cloudflare Durable Object: strongly consistent and shared by
 * every isolate and region of your Worker, unlike KV (eventually consistent, unsafe as a lock).
 * Each call is one request to one object instance (`idFromName(name)`), which handles requests
 * one at a time: a claim is atomic, a lease has an owner token, a completed mark expires after
 * its TTL. It also tracks jobs for `createMappaRecovery`.
 *
 * One instance serializes every delivery's few calls (claim, renew, complete): plenty for
 * webhook traffic (a Durable Object handles several hundred small requests a second), but it
 * is one object in one location. Give independent receivers their own `name`.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { mappaWebhook } from "@mappa-webhooks/hono";
 * import { createDurableObjectIdempotencyStore } from "@mappa-webhooks/cloudflare";
 * export { MappaIdempotencyObject } from "@mappa-webhooks/cloudflare";
 *
 * const app = new Hono<{ Bindings: Env }>();
 * let receiver: ReturnType<typeof mappaWebhook> | undefined;
 * app.all("/webhooks/mappa", (c, next) => {
 *   receiver ??= mappaWebhook({ secret: c.env.MAPPA_WEBHOOK_SECRET,
 *     idempotency: createDurableObjectIdempotencyStore(c.env.MAPPA_IDEMPOTENCY), on: handlers });
 *   return receiver(c, next);
 * });
 * export default app;
 * ```
 */
export function createDurableObjectIdempotencyStore(
  namespace: DurableObjectNamespaceLike,
  options: DurableObjectIdempotencyStoreOptions = {},
): DurableObjectIdempotencyStore {
  checkNamespace(namespace);
  if (options === null || typeof options !== "object") {
    throw invalidOptions(
      API,
      'takes an options object (or nothing), e.g. `{ name: "mappa-webhooks" }`.',
    );
  }
  const name = options.name ?? DEFAULT_OBJECT_NAME;
  if (typeof name !== "string" || name === "") {
    throw invalidOptions(API, '`name` must be a non-empty string, e.g. `"mappa-webhooks"`.');
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof timeoutMs !== "number" || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw invalidOptions(
      API,
      `\`timeoutMs\` must be a positive number of milliseconds, got ${String(timeoutMs)}.`,
    );
  }
  const clock = options.now;
  if (clock !== undefined && typeof clock !== "function") {
    throw invalidOptions(API, "`now` must be a function returning milliseconds (like `Date.now`).");
  }
  const now = () => (clock === undefined ? {} : { now: clock() });

  // The id is plain data; a stub is an I/O object of the request that made it (workerd refuses
  // it in another request's handler), so every call gets its own.
  let id: unknown;
  const stubOf = (): DurableObjectStubLike => {
    id ??= namespace.idFromName(name);
    return namespace.get(id as never);
  };

  const call = async <T>(what: string, body: RpcRequest): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(storeFailed(`the object did not answer the ${what} within ${timeoutMs} ms.`)),
        timeoutMs,
      );
    });
    try {
      const answer = async () => {
        const response = await stubOf().fetch(RPC_URL, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        const text = await response.text();
        let parsed: { result?: unknown; error?: unknown } | undefined;
        try {
          parsed = JSON.parse(text) as { result?: unknown; error?: unknown };
        } catch {
          parsed = undefined;
        }
        if (!response.ok || parsed === undefined || !("result" in parsed)) {
          const reason =
            typeof parsed?.error === "string"
              ? parsed.error
              : `HTTP ${response.status} ${text.slice(0, 200)}`;
          const hint =
            response.status === 404 || response.status === 405 || parsed === undefined
              ? " Is the binding's class_name MappaIdempotencyObject (exported from your Worker)?"
              : "";
          throw storeFailed(`the ${what} was refused: ${reason}.${hint}`);
        }
        return parsed.result as T;
      };
      return await Promise.race([answer(), timeout]);
    } catch (error) {
      if ((error as { code?: unknown }).code === "idempotency_store_failed") throw error;
      throw storeFailed(`the ${what} failed: ${errorMessage(error)}.`, error);
    } finally {
      clearTimeout(timer);
    }
  };

  const checkKey = (what: string, key: unknown) => {
    if (typeof key !== "string" || key === "") {
      throw storeFailed(`the ${what} needs a non-empty string key.`);
    }
    if (byteLength(key) > MAX_KEY_BYTES) {
      throw storeFailed(
        `the ${what} of a key longer than ${MAX_KEY_BYTES} UTF-8 bytes is not stored.`,
      );
    }
  };
  const checkJobId = (what: string, jobId: unknown) => {
    if (typeof jobId !== "string" || jobId === "") {
      throw invalidOptions(what, `needs a non-empty string job id, got ${String(jobId)}.`);
    }
    if (byteLength(jobId) > MAX_KEY_BYTES) {
      throw storeFailed(
        `the ${what} of a job id longer than ${MAX_KEY_BYTES} UTF-8 bytes is not stored.`,
      );
    }
  };

  return {
    name,
    async claim(key, { leaseMs }): Promise<ClaimResult> {
      checkKey("claim", key);
      return call<ClaimResult>(`claim of event ${key}`, { op: "claim", key, leaseMs, ...now() });
    },
    async complete(key, token, { ttlMs }) {
      checkKey("complete", key);
      await call(`complete of event ${key}`, { op: "complete", key, token, ttlMs, ...now() });
    },
    async release(key, token) {
      checkKey("release", key);
      await call(`release of event ${key}`, { op: "release", key, token });
    },
    async renew(key, token, { leaseMs }) {
      checkKey("renewal", key);
      return (
        (await call<boolean>(`renewal of event ${key}`, {
          op: "renew",
          key,
          token,
          leaseMs,
          ...now(),
        })) === true
      );
    },
    async track(jobId, trackOptions = {}) {
      checkJobId("track", jobId);
      const trackedAt = trackOptions.trackedAt;
      await call(`tracking of job ${jobId}`, {
        op: "track",
        jobId,
        ...now(),
        ...(trackedAt === undefined ? {} : { trackedAt }),
      });
    },
    async untrack(jobId) {
      checkJobId("untrack", jobId);
      await call(`untracking of job ${jobId}`, { op: "untrack", jobId });
    },
    async tracked({ limit, after }): Promise<TrackedJob[]> {
      if (!Number.isInteger(limit) || limit < 1) {
        throw invalidOptions("tracked", `needs a positive integer limit, got ${String(limit)}.`);
      }
      return call<TrackedJob[]>("listing of tracked jobs", {
        op: "tracked",
        limit,
        ...(after === undefined ? {} : { after }),
      });
    },
  };
}
