import { MappaWebhookError } from "./errors.js";
import type { MappaEvent } from "./events.js";
import { type JobTrackingStore, memoryJobTracking } from "./recovery-store.js";

/** What {@link IdempotencyStore.claim} is told besides the key. */
export interface ClaimOptions {
  /** How long the claim holds unless renewed, completed or released. */
  leaseMs: number;
  /** The verified event being claimed. */
  event?: MappaEvent;
  /**
   * The delivery's trace context (W3C `traceparent`, ...), when the receiver is instrumented:
   * a store that keeps the event (a durable inbox) stores it too, so the worker's span links to
   * this delivery.
   */
  traceContext?: Readonly<Record<string, string>>;
}

/** Outcome of claiming an event key. */
export type ClaimResult =
  /** This delivery owns the event until it completes, releases, or the lease runs out. */
  | {
      status: "claimed";
      token: string;
      /**
       * True when the claim itself stored the event for workers to handle later (a durable
       * inbox): the receiver then reports the delivery's outcome as `stored`, not `handled`.
       */
      stored?: boolean;
    }
  /** Another delivery of the same event is being handled right now. */
  | { status: "in_flight" }
  /** The event was already handled successfully. */
  | { status: "completed" };

/**
 * Where the receiver records which events it has handled. Built for shared stores (Redis):
 * a claim is a lease with an owner token, so a crashed instance's claim expires and a retry
 * can run, and only the owner can release it.
 *
 * @example
 * ```ts
 * const store: IdempotencyStore = {
 *   async claim(key, { leaseMs }) { ... return { status: "claimed", token } },
 *   async complete(key, token, { ttlMs }) { ... },
 *   async release(key, token) { ... },
 * };
 * createMappaWebhooks({ secret, idempotency: store });
 * ```
 */
export interface IdempotencyStore {
  /**
   * Atomically claim `key` for `leaseMs`, unless it is completed or claimed by someone else.
   * `event` is the verified event the key belongs to, for stores that keep it (a durable
   * inbox stores it in the same statement); most stores ignore it.
   */
  claim(key: string, options: ClaimOptions): Promise<ClaimResult>;
  /** Mark `key` handled for `ttlMs`, so later deliveries are answered without running handlers. */
  complete(key: string, token: string, options: { ttlMs: number }): Promise<void>;
  /** Give up the claim after a failure, so the sender's retry runs the handlers again. */
  release(key: string, token: string): Promise<void>;
  /**
   * Extend a live claim by `leaseMs` from now. The receiver calls it while handlers run (every
   * third of the lease), so a slow handler is never run a second time in parallel; a crashed
   * instance stops renewing and its claim expires. Resolves `false` when `token` no longer owns
   * `key` (the lease ran out and another delivery claimed it). A store without `renew` gets no
   * renewals: keep its `leaseMs` longer than any handler then.
   */
  renew?(key: string, token: string, options: { leaseMs: number }): Promise<boolean>;
}

/**
 * Mappa retries for about 36 minutes (0 s, 5 s, 30 s, 5 min, 30 min); a completed key is kept
 * well past that so a late retry is still recognised.
 */
export const DEFAULT_COMPLETED_TTL_MS = 60 * 60 * 1000;
/** How long a claim protects an in-flight event before another delivery may take over. */
export const DEFAULT_LEASE_MS = 60 * 1000;

/** Options of {@link createMemoryIdempotencyStore}. */
export interface MemoryIdempotencyStoreOptions {
  /** Most keys kept; the oldest are forgotten first. Default 10 000. */
  maxEntries?: number;
  /** Clock in milliseconds, for tests. Default `Date.now`. */
  now?: () => number;
}

interface Entry {
  completed: boolean;
  token: string;
  expiresAt: number;
}

let tokenCounter = 0;
function newToken(): string {
  const random = globalThis.crypto?.randomUUID?.();
  return random ?? `${Date.now().toString(36)}-${(tokenCounter++).toString(36)}`;
}

/**
 * An in-process {@link IdempotencyStore}: right for one instance. With several instances use
 * a shared store such as `@mappa-webhooks/redis`.
 *
 * @example
 * ```ts
 * createMappaWebhooks({ secret, idempotency: createMemoryIdempotencyStore({ maxEntries: 50_000 }) });
 * ```
 */
export function createMemoryIdempotencyStore(
  options: MemoryIdempotencyStoreOptions = {},
): Required<IdempotencyStore> & JobTrackingStore & { readonly size: number } {
  if (options === null || typeof options !== "object") {
    throw new MappaWebhookError(
      "invalid_options",
      "createMemoryIdempotencyStore takes an options object (or nothing), e.g. `{ maxEntries: 50_000 }`.",
    );
  }
  const maxEntries = options.maxEntries ?? 10_000;
  if (!(typeof maxEntries === "number" && Number.isSafeInteger(maxEntries) && maxEntries >= 1)) {
    const shown = typeof maxEntries === "string" ? JSON.stringify(maxEntries) : String(maxEntries);
    throw new MappaWebhookError(
      "invalid_options",
      `createMemoryIdempotencyStore: \`maxEntries\` must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}, got ${shown}.`,
    );
  }
  const now = options.now ?? Date.now;
  if (typeof now !== "function") {
    throw new MappaWebhookError(
      "invalid_options",
      "createMemoryIdempotencyStore: `now` must be a function returning milliseconds (like `Date.now`).",
    );
  }
  const entries = new Map<string, Entry>();
  const tracking = memoryJobTracking(now);

  const set = (key: string, entry: Entry) => {
    entries.delete(key); // re-insert so Map order stays oldest-first
    entries.set(key, entry);
    while (entries.size > maxEntries) {
      const oldest = entries.keys().next().value as string;
      entries.delete(oldest);
    }
  };

  return {
    get size() {
      return entries.size;
    },
    track: tracking.track,
    untrack: tracking.untrack,
    tracked: tracking.tracked,
    async claim(key, { leaseMs }) {
      const t = now();
      const entry = entries.get(key);
      if (entry !== undefined && entry.expiresAt > t) {
        return entry.completed ? { status: "completed" } : { status: "in_flight" };
      }
      const token = newToken();
      set(key, { completed: false, token, expiresAt: t + leaseMs });
      return { status: "claimed", token };
    },
    async complete(key, token, { ttlMs }) {
      // The effect happened, so the key is completed even if the lease had run out meanwhile.
      set(key, { completed: true, token, expiresAt: now() + ttlMs });
    },
    async release(key, token) {
      const entry = entries.get(key);
      if (entry !== undefined && !entry.completed && entry.token === token) entries.delete(key);
    },
    async renew(key, token, { leaseMs }) {
      const entry = entries.get(key);
      if (entry === undefined || entry.completed || entry.token !== token) return false;
      // Renewed in place: the claim keeps its age, so the oldest-first eviction stays honest.
      entry.expiresAt = now() + leaseMs;
      return true;
    },
  };
}
