import { MappaWebhookError } from "@mappa-webhooks/core";

/** The default name of the one Durable Object instance the store talks to. */
export const DEFAULT_OBJECT_NAME = "mappa-webhooks";

/**
 * Longest event key or job id, in UTF-8 bytes. A Durable Object's storage keys are limited to
 * 2 KiB; the object prefixes its own bookkeeping, so keys stop a little short of that.
 */
export const MAX_KEY_BYTES = 2000;

/** One call of the object's JSON RPC (POSTed to its `fetch`). `now` is for tests only. */
export type RpcRequest =
  | { op: "claim"; key: string; leaseMs: number; now?: number }
  | { op: "complete"; key: string; token: string; ttlMs: number; now?: number }
  | { op: "release"; key: string; token: string }
  | { op: "renew"; key: string; token: string; leaseMs: number; now?: number }
  | { op: "track"; jobId: string; trackedAt?: number; now?: number }
  | { op: "untrack"; jobId: string }
  | { op: "tracked"; limit: number; after?: string }
  /** Diagnostics: how many event keys are stored (expired ones until the alarm sweeps them). */
  | { op: "size" };

/** The path the store POSTs to (any host: the stub routes by object, not by URL). */
export const RPC_URL = "https://mappa-webhooks.durable-object/rpc";

const encoder = new TextEncoder();
export const byteLength = (text: string): number => encoder.encode(text).length;

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function invalidOptions(api: string, message: string): MappaWebhookError {
  return new MappaWebhookError("invalid_options", `${api}: ${message}`);
}

export function storeFailed(message: string, cause?: unknown): MappaWebhookError {
  return new MappaWebhookError(
    "idempotency_store_failed",
    `The Durable Object idempotency store failed: ${message} Answered 503 so Mappa retries the delivery.`,
    cause === undefined ? undefined : { cause },
  );
}
