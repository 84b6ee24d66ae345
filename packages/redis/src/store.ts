import { createHash, randomUUID } from "node:crypto";
import {
  type ClaimResult,
  type IdempotencyStore,
  type JobTrackingStore,
  MappaWebhookError,
  type TrackedJob,
} from "@mappa-webhooks/core";
import { checkMs } from "./options.js";
import {
  CLAIM_SCRIPT,
  COMPLETE_SCRIPT,
  RELEASE_SCRIPT,
  RENEW_SCRIPT,
  type RedisScript,
} from "./scripts.js";

/**
 * The part of an ioredis `Redis` or `Cluster` client the store uses. Pass your client as is.
 */
export interface IoRedisLikeClient {
  evalsha(sha1: string, numKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
  /** ioredis' connection status (`"ready"`, `"reconnecting"`, `"end"`, ...). */
  readonly status: string;
}

/**
 * Any other Redis client, through a one-line adapter that runs a Lua script.
 *
 * @example
 * ```ts
 * // node-redis 4/5
 * const runner: RedisScriptRunner = {
 *   runScript: (script, keys, args) => client.eval(script.source, { keys, arguments: args }),
 * };
 * createRedisIdempotencyStore({ client: runner });
 * ```
 */
export interface RedisScriptRunner {
  runScript(script: RedisScript, keys: string[], args: string[]): Promise<unknown>;
}

/** Options of {@link createRedisIdempotencyStore}. */
export interface RedisIdempotencyStoreOptions {
  /** An ioredis `Redis` or `Cluster` (recommended), or a {@link RedisScriptRunner}. */
  client: IoRedisLikeClient | RedisScriptRunner;
  /**
   * Prepended to every key: `<prefix>:{<event key>}`. Default `"mappa-webhooks"`. Must not
   * contain `{` or `}` (the braces around the event key are the Redis Cluster hash tag).
   */
  prefix?: string;
  /**
   * How long one Redis call may take before the store gives up with
   * `idempotency_store_failed` (503, so Mappa retries). Default 2000 ms; 1 to 2^31−1.
   */
  timeoutMs?: number;
}

/**
 * The Redis idempotency store, with the key it uses for an event (for inspection and tests).
 * It also tracks jobs for `createMappaRecovery` ({@link JobTrackingStore}).
 */
export interface RedisIdempotencyStore extends IdempotencyStore, JobTrackingStore {
  /**
   * Extends this delivery's claim to `leaseMs` from now, atomically: only while the key is still
   * an in-flight claim holding `token`. Resolves `false` once the event was completed, the claim
   * expired, or another delivery claimed it since. The receiver calls it every third of the
   * lease while handlers run, so a live handler keeps its claim however long it takes, and a
   * crashed instance's claim expires one lease after its last renewal.
   *
   * @example
   * ```ts
   * const claim = await store.claim("evt_1", { leaseMs: 60_000 });
   * if (claim.status === "claimed") await store.renew("evt_1", claim.token, { leaseMs: 60_000 }); // true
   * ```
   */
  renew(key: string, token: string, options: { leaseMs: number }): Promise<boolean>;
  /** The Redis key that holds the state of the event with this idempotency key. */
  keyFor(eventKey: string): string;
  /**
   * The two keys of the tracked jobs: a sorted set of job ids (score 0, listed by
   * `ZRANGEBYLEX`) and a hash of their `trackedAt`. One hash tag, so one Cluster slot.
   */
  readonly trackingKeys: { readonly ids: string; readonly trackedAt: string };
  readonly prefix: string;
}

function trackingScript(name: string, source: string): RedisScript {
  return { name, source, sha1: createHash("sha1").update(source).digest("hex") };
}

// KEYS[1] the sorted set of job ids, KEYS[2] the hash of their trackedAt. Each script touches
// both, atomically (one hash tag: one node, one Cluster slot).

/** ARGV[1] job id, ARGV[2] trackedAt ms. → 1. Keeps the first trackedAt. */
const TRACK_SCRIPT = trackingScript(
  "track",
  `redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], 'NX', 0, ARGV[1])
return 1`,
);

/** ARGV[1] job id. → 1 if it was tracked, 0 if not. */
const UNTRACK_SCRIPT = trackingScript(
  "untrack",
  `redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])`,
);

/**
 * The complete and an untrack in one script, for a client on one Redis server (not Cluster,
 * where the tracked jobs have a slot of their own). KEYS[1] event key, KEYS[2] job ids, KEYS[3]
 * their trackedAt; ARGV[1] token, ARGV[2] ttl ms, ARGV[3] job id. → 1
 */
const COMPLETE_AND_UNTRACK_SCRIPT = trackingScript(
  "complete and untrack",
  `redis.call('SET', KEYS[1], 'd:' .. ARGV[1], 'PX', ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[3])
return 1`,
);

/** ARGV[1] limit, ARGV[2] after ('' for the start). → { id1, at1, id2, at2, ... } */
const TRACKED_SCRIPT = trackingScript(
  "tracked",
  `local min = '-'
if ARGV[2] ~= '' then min = '(' .. ARGV[2] end
local ids = redis.call('ZRANGEBYLEX', KEYS[1], min, '+', 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or '0'
end
return out`,
);

const DEFAULT_PREFIX = "mappa-webhooks";
const DEFAULT_TIMEOUT_MS = 2000;
// ioredis states in which a command would wait in the offline queue instead of being sent.
const DISCONNECTED_STATES = new Set(["reconnecting", "close", "end", "disconnecting"]);

function isScriptRunner(client: object): client is RedisScriptRunner {
  return typeof (client as Partial<RedisScriptRunner>).runScript === "function";
}

function isIoRedisLike(client: object): client is IoRedisLikeClient {
  const candidate = client as Partial<IoRedisLikeClient>;
  return typeof candidate.evalsha === "function" && typeof candidate.eval === "function";
}

function storeError(message: string, cause?: unknown): MappaWebhookError {
  return new MappaWebhookError(
    "idempotency_store_failed",
    `Redis idempotency store: ${message} Answered 503 so Mappa retries the delivery.`,
    cause === undefined ? {} : { cause },
  );
}

function invalidOptions(message: string): MappaWebhookError {
  return new MappaWebhookError("invalid_options", `createRedisIdempotencyStore: ${message}`);
}

function positiveInteger(ms: number): string {
  return String(Math.max(1, Math.ceil(ms)));
}

/**
 * An {@link IdempotencyStore} on Redis, shared by every instance of a receiver: a delivery
 * claims the event with a lease (an owner token and an expiry), renews the lease while its
 * handlers run, completes it for the completed TTL (default 1 h, past Mappa's ~36 min of
 * retries) or releases it after a failure so Mappa's retry runs the handlers again. A crashed
 * instance stops renewing and its lease simply expires. Each operation is one Lua script on one
 * key, so it is atomic, also on Redis Cluster.
 *
 * When Redis cannot be reached, calls reject within `timeoutMs` (at once while ioredis is
 * reconnecting) with `idempotency_store_failed`; the receiver answers 503 and Mappa retries.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import { mappaWebhook } from "@mappa-webhooks/express";
 * import { createRedisIdempotencyStore } from "@mappa-webhooks/redis";
 *
 * const idempotency = createRedisIdempotencyStore({ client: new Redis(process.env.REDIS_URL!) });
 * app.use(mappaWebhook({ secret, idempotency, on: { ... } })); // POST /webhooks/mappa
 * ```
 */
export function createRedisIdempotencyStore(
  options: RedisIdempotencyStoreOptions,
): RedisIdempotencyStore {
  if (options === null || typeof options !== "object" || options.client == null) {
    throw invalidOptions("needs `{ client }`: an ioredis Redis or Cluster client.");
  }
  const { client } = options;
  const runner = isScriptRunner(client) ? client : undefined;
  const ioredis = runner === undefined && isIoRedisLike(client) ? client : undefined;
  if (runner === undefined && ioredis === undefined) {
    throw invalidOptions(
      "`client` is neither an ioredis client (with `evalsha` and `eval`) nor a `{ runScript }` adapter.",
    );
  }
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== "string" || prefix === "" || /[{}]/.test(prefix)) {
    throw invalidOptions("`prefix` must be a non-empty string without `{` or `}`.");
  }
  const timeoutMs = checkMs(
    "createRedisIdempotencyStore",
    "timeoutMs",
    options.timeoutMs,
    DEFAULT_TIMEOUT_MS,
  );

  const keyFor = (eventKey: string) => `${prefix}:{${eventKey}}`;

  const trackingTag = `{~tracked-jobs}`;
  const trackingKeys = Object.freeze({
    ids: `${prefix}:${trackingTag}:ids`,
    trackedAt: `${prefix}:${trackingTag}:at`,
  });

  const runIoRedis = async (
    redis: IoRedisLikeClient,
    script: RedisScript,
    keys: string[],
    args: string[],
  ) => {
    try {
      return await redis.evalsha(script.sha1, keys.length, ...keys, ...args);
    } catch (error) {
      // First use, or Redis restarted and forgot its scripts: send the source once.
      if (error instanceof Error && error.message.startsWith("NOSCRIPT")) {
        return await redis.eval(script.source, keys.length, ...keys, ...args);
      }
      throw error;
    }
  };

  /**
   * Runs one script within `timeoutMs`. `late` hears the result of a call that Redis answered
   * only after the store gave up on it: ioredis keeps unsent and unanswered commands and sends
   * them again once it reconnects, so a call that timed out may still run.
   */
  const run = (
    script: RedisScript,
    eventKey: string,
    args: string[],
    late?: (result: unknown) => void,
  ): Promise<unknown> => runOn(script, [keyFor(eventKey)], `event ${eventKey}`, args, late);

  /** Runs `script` on `keys`; `subject` names what it is about in errors ("event evt_1"). */
  const runOn = async (
    script: RedisScript,
    keys: string[],
    subject: string,
    args: string[],
    late?: (result: unknown) => void,
  ): Promise<unknown> => {
    if (ioredis !== undefined && DISCONNECTED_STATES.has(ioredis.status)) {
      throw storeError(
        `Redis is not connected (client status "${ioredis.status}"), so the ${script.name} of ${subject} did not run.`,
      );
    }
    // Through a promise chain, so an adapter that throws synchronously still becomes a 503.
    const call =
      runner !== undefined
        ? Promise.resolve().then(() => runner.runScript(script, keys, args))
        : runIoRedis(ioredis as IoRedisLikeClient, script, keys, args);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(
          storeError(
            `Redis did not answer the ${script.name} of ${subject} within ${timeoutMs} ms.`,
          ),
        );
      }, timeoutMs);
    });
    // A late answer after the timeout must not become an unhandled rejection.
    call.then(
      (result) => {
        if (timedOut) late?.(result);
      },
      () => {},
    );
    try {
      return await Promise.race([call, timeout]);
    } catch (error) {
      if (error instanceof MappaWebhookError) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      throw storeError(`the ${script.name} of ${subject} failed: ${reason}.`, error);
    } finally {
      clearTimeout(timer);
    }
  };

  const trackingArgs = [trackingKeys.ids, trackingKeys.trackedAt];

  // The receiver completes a delivery and untracks its job in the same tick. On one Redis
  // server (not Cluster) the two become one script: one write and one answer instead of two.
  const pairsCalls =
    ioredis !== undefined && (ioredis as { isCluster?: unknown }).isCluster !== true;
  interface Pending {
    resolve(): void;
    reject(error: unknown): void;
  }
  interface PendingComplete extends Pending {
    key: string;
    token: string;
    ttl: string;
    untrack?: Pending & { jobId: string };
  }
  /** Completes asked for in this tick, sent when it ends. */
  let completes: PendingComplete[] = [];
  const sendCompletes = () => {
    const batch = completes;
    completes = [];
    for (const entry of batch) {
      const { untrack } = entry;
      const sent =
        untrack === undefined
          ? run(COMPLETE_SCRIPT, entry.key, [entry.token, entry.ttl])
          : runOn(
              COMPLETE_AND_UNTRACK_SCRIPT,
              [keyFor(entry.key), ...trackingArgs],
              `event ${entry.key} and job ${untrack.jobId}`,
              [entry.token, entry.ttl, untrack.jobId],
            );
      sent.then(
        () => {
          entry.resolve();
          untrack?.resolve();
        },
        (error: unknown) => {
          entry.reject(error);
          untrack?.reject(error);
        },
      );
    }
  };
  const completeLater = (key: string, token: string, ttl: string) =>
    new Promise<void>((resolve, reject) => {
      if (completes.length === 0) queueMicrotask(sendCompletes);
      completes.push({ key, token, ttl, resolve, reject });
    });
  /** Rides along with a complete of this tick that has no untrack yet; `undefined` if none. */
  const untrackWithComplete = (jobId: string): Promise<void> | undefined => {
    const entry = completes.find((candidate) => candidate.untrack === undefined);
    if (entry === undefined) return undefined;
    return new Promise<void>((resolve, reject) => {
      entry.untrack = { jobId, resolve, reject };
    });
  };
  const checkJobId = (name: string, jobId: unknown) => {
    if (typeof jobId !== "string" || jobId === "") {
      throw invalidOptions(`${name} needs a non-empty string job id, got ${String(jobId)}.`);
    }
  };

  return {
    prefix,
    keyFor,
    trackingKeys,
    async track(jobId, options = {}) {
      checkJobId("track", jobId);
      const trackedAt = Math.round(options.trackedAt ?? Date.now());
      await runOn(TRACK_SCRIPT, trackingArgs, `job ${jobId}`, [jobId, String(trackedAt)]);
    },
    async untrack(jobId) {
      checkJobId("untrack", jobId);
      const paired = pairsCalls ? untrackWithComplete(jobId) : undefined;
      if (paired !== undefined) return await paired;
      await runOn(UNTRACK_SCRIPT, trackingArgs, `job ${jobId}`, [jobId]);
    },
    async tracked({ limit, after }): Promise<TrackedJob[]> {
      if (!Number.isInteger(limit) || limit < 1) {
        throw invalidOptions(`tracked needs a positive integer limit, got ${String(limit)}.`);
      }
      const flat = await runOn(TRACKED_SCRIPT, trackingArgs, "the tracked jobs", [
        String(limit),
        after ?? "",
      ]);
      if (!Array.isArray(flat)) {
        throw storeError(`listing the tracked jobs returned an unexpected ${String(flat)}.`);
      }
      const jobs: TrackedJob[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        jobs.push({ jobId: String(flat[i]), trackedAt: Number(flat[i + 1]) });
      }
      return jobs;
    },
    async claim(key, { leaseMs }): Promise<ClaimResult> {
      const token = randomUUID();
      // A claim that lands after this delivery gave up (503) would hold the event for a whole
      // lease, answering Mappa's retries 409: give it back as soon as it shows up.
      const releaseLate = (result: unknown) => {
        if (result === "claimed") run(RELEASE_SCRIPT, key, [token]).catch(() => {});
      };
      const result = await run(CLAIM_SCRIPT, key, [token, positiveInteger(leaseMs)], releaseLate);
      if (result === "claimed") return { status: "claimed", token };
      if (result === "completed") return { status: "completed" };
      if (result === "in_flight") return { status: "in_flight" };
      throw storeError(`the claim of event ${key} returned an unexpected ${String(result)}.`);
    },
    async complete(key, token, { ttlMs }) {
      if (pairsCalls) return await completeLater(key, token, positiveInteger(ttlMs));
      await run(COMPLETE_SCRIPT, key, [token, positiveInteger(ttlMs)]);
    },
    async release(key, token) {
      await run(RELEASE_SCRIPT, key, [token]);
    },
    async renew(key, token, { leaseMs }) {
      const result = await run(RENEW_SCRIPT, key, [token, positiveInteger(leaseMs)]);
      if (result === 1) return true;
      if (result === 0) return false;
      throw storeError(`the renew of event ${key} returned an unexpected ${String(result)}.`);
    },
  };
}
