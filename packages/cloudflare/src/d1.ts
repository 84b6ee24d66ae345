import type {
  ClaimResult,
  IdempotencyStore,
  JobTrackingStore,
  TrackedJob,
} from "@mappa-webhooks/core";
import { MappaWebhookError } from "@mappa-webhooks/core";
import { byteLength, errorMessage, invalidOptions, MAX_KEY_BYTES } from "./protocol.js";

/**
 * A prepared D1 statement (`env.DB.prepare(sql)`), as far as the store uses it.
 *
 * @example
 * ```ts
 * const statement: D1StatementLike = env.DB.prepare("SELECT 1 AS one");
 * ```
 */
export interface D1StatementLike {
  bind(...values: unknown[]): D1StatementLike;
  all<T = Record<string, unknown>>(): Promise<{ results: T[] }>;
  run(): Promise<unknown>;
}

/**
 * A D1 database binding (`env.DB`), or Miniflare's `getD1Database(...)` in Node tests. The
 * `D1Database` type of `wrangler types` (or @cloudflare/workers-types) is one.
 *
 * @example
 * ```ts
 * const database: D1DatabaseLike = env.DB;
 * ```
 */
export interface D1DatabaseLike {
  prepare(query: string): D1StatementLike;
  batch<T = unknown>(statements: D1StatementLike[]): Promise<{ results: T[] }[]>;
}

/**
 * Options of {@link createD1IdempotencyStore}.
 *
 * @example
 * ```ts
 * const options: D1IdempotencyStoreOptions = { database: env.DB, table: "mappa_webhooks" };
 * ```
 */
export interface D1IdempotencyStoreOptions {
  /** The D1 binding, `env.DB` (wrangler.toml `[[d1_databases]]`). */
  database: D1DatabaseLike;
  /**
   * The tables' name prefix: `<table>_events` holds the event keys, `<table>_jobs` the tracked
   * jobs. Letters, digits and `_`. Default `"mappa_webhooks"`. Both are created on first use.
   */
  table?: string;
  /**
   * The clock for leases and TTLs, in milliseconds. Default: the database's clock (SQLite's
   * `unixepoch('subsec')`, one clock for every isolate). Pass one only in tests.
   */
  now?: () => number;
}

/**
 * The D1 idempotency store: an {@link IdempotencyStore} with `renew`, and job tracking.
 *
 * @example
 * ```ts
 * const store: D1IdempotencyStore = createD1IdempotencyStore({ database: env.DB });
 * await store.sweep({ limit: 1000 }); // from a cron trigger
 * ```
 */
export interface D1IdempotencyStore extends Required<IdempotencyStore>, JobTrackingStore {
  /** The tables' name prefix. */
  readonly table: string;
  /**
   * Deletes up to `limit` (default 500) expired keys and resolves how many it deleted. Claims
   * already delete a few each; call it from a cron trigger to keep the table small after a burst.
   */
  sweep(options?: { limit?: number }): Promise<number>;
}

const API = "createD1IdempotencyStore";
const DEFAULT_TABLE = "mappa_webhooks";
/** Expired keys each claim deletes in its batch: more than the one key a claim may add. */
const CLAIM_SWEEP = 8;
/** The database's clock in whole milliseconds, unless the statement binds an injected one. */
const DB_NOW = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

function storeFailed(message: string, cause?: unknown): MappaWebhookError {
  return new MappaWebhookError(
    "idempotency_store_failed",
    `The D1 idempotency store failed: ${message} Answered 503 so Mappa retries the delivery.`,
    cause === undefined ? undefined : { cause },
  );
}

function checkDatabase(database: unknown): asserts database is D1DatabaseLike {
  const candidate = database as Partial<D1DatabaseLike> | null | undefined;
  if (
    candidate === null ||
    typeof candidate !== "object" ||
    typeof candidate.prepare !== "function" ||
    typeof candidate.batch !== "function"
  ) {
    const got =
      database === undefined
        ? "undefined (is the binding missing from this environment?)"
        : `${database === null ? "null" : `a ${typeof database}`} without prepare and batch`;
    throw invalidOptions(
      API,
      `needs a D1 database as \`database\`, got ${got}. Bind it in wrangler.toml [[d1_databases]] (binding = "DB") and pass { database: env.DB }.`,
    );
  }
}

/**
 * An {@link IdempotencyStore} on Cloudflare D1, with the job tracking of `createMappaRecovery`.
 * D1 has no interactive transactions, so every step is one statement or one `batch()` (which
 * D1 runs as a transaction, one at a time on the database's primary): a claim is an upsert that
 * takes a key only if it is free or expired, then reads who holds it, in one batch. Leases and
 * TTLs run on the database's clock.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { mappaWebhook } from "@mappa-webhooks/hono";
 * import { createD1IdempotencyStore } from "@mappa-webhooks/cloudflare";
 *
 * const app = new Hono<{ Bindings: { DB: D1Database; MAPPA_WEBHOOK_SECRET: string } }>();
 * let receiver: ReturnType<typeof mappaWebhook> | undefined;
 * app.all("/webhooks/mappa", (c, next) => {
 *   receiver ??= mappaWebhook({ secret: c.env.MAPPA_WEBHOOK_SECRET,
 *     idempotency: createD1IdempotencyStore({ database: c.env.DB }), on: handlers });
 *   return receiver(c, next);
 * });
 * export default app;
 * ```
 */
export function createD1IdempotencyStore(options: D1IdempotencyStoreOptions): D1IdempotencyStore {
  if (options === null || typeof options !== "object") {
    throw invalidOptions(API, "takes an options object, e.g. `{ database: env.DB }`.");
  }
  const { database } = options;
  checkDatabase(database);
  const table = options.table ?? DEFAULT_TABLE;
  if (typeof table !== "string" || !/^[A-Za-z_][A-Za-z0-9_]{0,50}$/.test(table)) {
    throw invalidOptions(
      API,
      `\`table\` must be letters, digits and _ (up to 51, not starting with a digit), got ${JSON.stringify(table)}.`,
    );
  }
  const clock = options.now;
  if (clock !== undefined && typeof clock !== "function") {
    throw invalidOptions(API, "`now` must be a function returning milliseconds (like `Date.now`).");
  }
  /** The injected time, or null: the SQL then reads the database's clock. */
  const at = () => (clock === undefined ? null : Math.floor(clock()));
  const events = `${table}_events`;
  const jobs = `${table}_jobs`;
  const now = (param: string) => `COALESCE(${param}, ${DB_NOW})`;

  const sql = {
    schema: [
      `CREATE TABLE IF NOT EXISTS ${events} (key TEXT PRIMARY KEY, token TEXT NOT NULL, completed INTEGER NOT NULL, expires_at INTEGER NOT NULL)`,
      `CREATE INDEX IF NOT EXISTS ${events}_expires_at ON ${events} (expires_at)`,
      `CREATE TABLE IF NOT EXISTS ${jobs} (job_id TEXT PRIMARY KEY, tracked_at INTEGER NOT NULL)`,
    ],
    // ?1 key, ?2 new token, ?3 lease, ?4 now. Taken only when free or expired.
    claim: `INSERT INTO ${events} (key, token, completed, expires_at) VALUES (?1, ?2, 0, ${now("?4")} + ?3) ON CONFLICT (key) DO UPDATE SET token = excluded.token, completed = 0, expires_at = excluded.expires_at WHERE ${events}.expires_at <= ${now("?4")}`,
    holder: `SELECT token, completed FROM ${events} WHERE key = ?1`,
    // ?1 now, ?2 limit: expired keys, oldest first.
    sweep: `DELETE FROM ${events} WHERE key IN (SELECT key FROM ${events} WHERE expires_at <= ${now("?1")} ORDER BY expires_at LIMIT ?2)`,
    // Unconditional, as in every store: the effect happened even if the lease ran out.
    complete: `INSERT INTO ${events} (key, token, completed, expires_at) VALUES (?1, ?2, 1, ${now("?4")} + ?3) ON CONFLICT (key) DO UPDATE SET token = excluded.token, completed = 1, expires_at = excluded.expires_at`,
    release: `DELETE FROM ${events} WHERE key = ?1 AND token = ?2 AND completed = 0`,
    renew: `UPDATE ${events} SET expires_at = ${now("?4")} + ?3 WHERE key = ?1 AND token = ?2 AND completed = 0 RETURNING key`,
    track: `INSERT INTO ${jobs} (job_id, tracked_at) VALUES (?1, COALESCE(?2, ${now("?3")})) ON CONFLICT (job_id) DO NOTHING`,
    untrack: `DELETE FROM ${jobs} WHERE job_id = ?1`,
    tracked: `SELECT job_id AS jobId, tracked_at AS trackedAt FROM ${jobs} WHERE ?1 IS NULL OR job_id > ?1 ORDER BY job_id LIMIT ?2`,
  };

  let ready: Promise<void> | undefined;
  const run = async <T>(what: string, task: () => Promise<T>): Promise<T> => {
    try {
      ready ??= database
        .batch(sql.schema.map((statement) => database.prepare(statement)))
        .then(() => undefined);
      try {
        await ready;
      } catch (error) {
        ready = undefined; // the next call tries again
        throw error;
      }
      return await task();
    } catch (error) {
      if ((error as { code?: unknown }).code === "idempotency_store_failed") throw error;
      throw storeFailed(`the ${what} failed: ${errorMessage(error)}.`, error);
    }
  };

  const checkKey = (what: string, key: unknown, kind = "key") => {
    if (typeof key !== "string" || key === "") {
      throw storeFailed(`the ${what} needs a non-empty string ${kind}.`);
    }
    if (byteLength(key) > MAX_KEY_BYTES) {
      throw storeFailed(`the ${what} of a ${kind} longer than ${MAX_KEY_BYTES} UTF-8 bytes.`);
    }
  };

  return {
    table,
    async claim(key, { leaseMs }): Promise<ClaimResult> {
      checkKey("claim", key);
      return run(`claim of event ${key}`, async () => {
        const token = crypto.randomUUID();
        const t = at();
        const [, , holder] = await database.batch<{ token: string; completed: number }>([
          database.prepare(sql.sweep).bind(t, CLAIM_SWEEP),
          database.prepare(sql.claim).bind(key, token, leaseMs, t),
          database.prepare(sql.holder).bind(key),
        ]);
        const row = holder?.results[0];
        if (row === undefined) throw new Error("the claimed key was not there after the claim");
        if (row.token === token) return { status: "claimed", token };
        return { status: Number(row.completed) === 1 ? "completed" : "in_flight" };
      });
    },
    async complete(key, token, { ttlMs }) {
      checkKey("complete", key);
      await run(`complete of event ${key}`, () =>
        database.prepare(sql.complete).bind(key, token, ttlMs, at()).run(),
      );
    },
    async release(key, token) {
      checkKey("release", key);
      await run(`release of event ${key}`, () =>
        database.prepare(sql.release).bind(key, token).run(),
      );
    },
    async renew(key, token, { leaseMs }) {
      checkKey("renewal", key);
      return run(`renewal of event ${key}`, async () => {
        const { results } = await database.prepare(sql.renew).bind(key, token, leaseMs, at()).all();
        return results.length > 0;
      });
    },
    async track(jobId, trackOptions = {}) {
      if (typeof jobId !== "string" || jobId === "") {
        throw invalidOptions("track", `needs a non-empty string job id, got ${String(jobId)}.`);
      }
      checkKey("track", jobId, "job id");
      const { trackedAt } = trackOptions;
      if (trackedAt !== undefined && !Number.isFinite(trackedAt)) {
        throw invalidOptions(
          "track",
          `trackedAt must be a number of milliseconds, got ${String(trackedAt)}.`,
        );
      }
      await run(`tracking of job ${jobId}`, () =>
        database
          .prepare(sql.track)
          .bind(jobId, trackedAt === undefined ? null : Math.round(trackedAt), at())
          .run(),
      );
    },
    async untrack(jobId) {
      if (typeof jobId !== "string" || jobId === "") {
        throw invalidOptions("untrack", `needs a non-empty string job id, got ${String(jobId)}.`);
      }
      await run(`untracking of job ${jobId}`, () =>
        database.prepare(sql.untrack).bind(jobId).run(),
      );
    },
    async tracked({ limit, after }): Promise<TrackedJob[]> {
      if (!Number.isInteger(limit) || limit < 1) {
        throw invalidOptions("tracked", `needs a positive integer limit, got ${String(limit)}.`);
      }
      return run("listing of tracked jobs", async () => {
        const { results } = await database
          .prepare(sql.tracked)
          .bind(after ?? null, limit)
          .all<{ jobId: string; trackedAt: number }>();
        return results.map((row) => ({ jobId: row.jobId, trackedAt: Number(row.trackedAt) }));
      });
    },
    async sweep({ limit = 500 } = {}) {
      if (!Number.isInteger(limit) || limit < 1) {
        throw invalidOptions("sweep", `needs a positive integer limit, got ${String(limit)}.`);
      }
      return run("sweep of expired keys", async () => {
        const result = (await database.prepare(sql.sweep).bind(at(), limit).run()) as {
          meta?: { changes?: number };
        };
        return result.meta?.changes ?? 0;
      });
    },
  };
}
