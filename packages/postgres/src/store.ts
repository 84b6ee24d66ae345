import { randomUUID } from "node:crypto";
import {
  type ClaimResult,
  type IdempotencyStore,
  isMappaWebhookError,
  type JobTrackingStore,
  type TrackedJob,
} from "@mappa-webhooks/core";
import {
  checkDuration,
  checkPool,
  errorMessage,
  hintFor,
  invalidOptions,
  type PgPoolLike,
  postgresError,
  withTimeout,
} from "./pg.js";
import { type PostgresTablesOptions, resolveTables } from "./schema.js";

/**
 * Options of {@link createPostgresIdempotencyStore}.
 *
 * @example
 * ```ts
 * const options: PostgresIdempotencyStoreOptions = { pool, timeoutMs: 2000 };
 * ```
 */
export interface PostgresIdempotencyStoreOptions extends PostgresTablesOptions {
  /** A `pg` Pool (or any pool with `query` and `connect`, e.g. Neon's serverless Pool). */
  pool: PgPoolLike;
  /**
   * How long one query may take before the store gives up with `idempotency_store_failed`
   * (503, so Mappa retries). Default 5000 ms.
   */
  timeoutMs?: number;
  /**
   * The clock for leases and TTLs, in milliseconds. Default: the database's own clock
   * (`clock_timestamp()`), which every instance shares. Pass one only in tests.
   */
  now?: () => number;
}

/**
 * The Postgres idempotency store, with the table it uses. It also tracks jobs for
 * `createMappaRecovery` ({@link JobTrackingStore}), in the `tracked_jobs` table.
 *
 * @example
 * ```ts
 * const store: PostgresIdempotencyStore = createPostgresIdempotencyStore({ pool });
 * console.log(store.table); // "mappa_webhooks"."idempotency"
 * ```
 */
export interface PostgresIdempotencyStore extends Required<IdempotencyStore>, JobTrackingStore {
  /** The qualified, quoted table name, e.g. `"mappa_webhooks"."idempotency"`. */
  readonly table: string;
  /** The qualified, quoted table of tracked jobs, e.g. `"mappa_webhooks"."tracked_jobs"`. */
  readonly trackedJobsTable: string;
}

/**
 * Job tracking on the `tracked_jobs` table (created by `migrate`): one row per job, listed in
 * job id order (`COLLATE "C"`, byte order). Shared by the idempotency store, the transactional
 * handlers and the inbox, so `createMappaRecovery` accepts the receiver's store of each.
 */
export function postgresJobTracking(
  pool: PgPoolLike,
  table: string,
  timeoutMs: number,
  now: () => number = Date.now,
): JobTrackingStore {
  const TRACK = `INSERT INTO ${table} (job_id, tracked_at)
      VALUES ($1, 'epoch'::timestamptz + $2::bigint * interval '1 millisecond')
      ON CONFLICT (job_id) DO NOTHING`;
  const UNTRACK = `DELETE FROM ${table} WHERE job_id = $1`;
  const LIST = `SELECT job_id,
         round(extract(epoch FROM tracked_at) * 1000)::bigint::text AS tracked_at
    FROM ${table}
   WHERE $2::text IS NULL OR job_id > $2::text
   ORDER BY job_id
   LIMIT $1`;
  const run = async (name: string, sql: string, values: unknown[]) => {
    try {
      return await withTimeout(pool.query(sql, values), timeoutMs, () =>
        storeError(`Postgres did not answer the ${name} within ${timeoutMs} ms.`),
      );
    } catch (error) {
      if (isMappaWebhookError(error)) throw error;
      throw storeError(`the ${name} failed: ${errorMessage(error)}.`, error);
    }
  };
  const checkJobId = (name: string, jobId: unknown) => {
    if (typeof jobId !== "string" || jobId === "" || jobId.includes("\0")) {
      throw invalidOptions(name, `needs a non-empty string job id, got ${String(jobId)}.`);
    }
  };
  return {
    async track(jobId, options = {}) {
      checkJobId("track", jobId);
      const trackedAt = Math.round(options.trackedAt ?? now());
      await run(`tracking of job ${jobId}`, TRACK, [jobId, trackedAt]);
    },
    async untrack(jobId) {
      checkJobId("untrack", jobId);
      await run(`untracking of job ${jobId}`, UNTRACK, [jobId]);
    },
    async tracked({ limit, after }): Promise<TrackedJob[]> {
      if (!Number.isInteger(limit) || limit < 1) {
        throw invalidOptions("tracked", `needs a positive integer limit, got ${String(limit)}.`);
      }
      const result = await run("listing of tracked jobs", LIST, [limit, after ?? null]);
      return (result.rows as Array<{ job_id: string; tracked_at: string }>).map((row) => ({
        jobId: row.job_id,
        trackedAt: Number(row.tracked_at),
      }));
    },
  };
}

const DEFAULT_TIMEOUT_MS = 5000;
const CLAIM_TRIES = 3;

function storeError(message: string, cause?: unknown) {
  return postgresError(
    "idempotency_store_failed",
    `idempotency store: ${message}${hintFor(cause)} Answered 503 so Mappa retries the delivery.`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * An {@link IdempotencyStore} on Postgres, shared by every instance of a receiver, with the
 * same contract as the core's memory store and `@mappa-webhooks/redis`: a delivery claims the
 * event with a lease (owner token + expiry), renews it while handlers run, completes it for the
 * completed TTL or releases it after a failure. One row per key, each operation one statement,
 * so every step is atomic. Times come from the database's clock, shared by all instances.
 *
 * Use it when the handlers' effects live outside this database. When they write to this
 * database, prefer {@link createTransactionalHandlers}: the done mark then commits together
 * with the writes.
 *
 * @example
 * ```ts
 * import pg from "pg";
 * import { mappaWebhook } from "@mappa-webhooks/express";
 * import { createPostgresIdempotencyStore, migrate } from "@mappa-webhooks/postgres";
 *
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * await migrate({ pool });
 * const idempotency = createPostgresIdempotencyStore({ pool });
 * app.post("/webhooks/mappa", mappaWebhook({ secret, idempotency, on: handlers }));
 * ```
 */
export function createPostgresIdempotencyStore(
  options: PostgresIdempotencyStoreOptions,
): PostgresIdempotencyStore {
  const api = "createPostgresIdempotencyStore";
  if (options === null || typeof options !== "object")
    throw invalidOptions(api, "needs `{ pool }`.");
  checkPool(api, options.pool);
  checkDuration(api, "timeoutMs", options.timeoutMs);
  if (options.now !== undefined && typeof options.now !== "function") {
    throw invalidOptions(api, "`now` must be a function returning milliseconds.");
  }
  const { pool } = options;
  const tables = resolveTables(options);
  const table = tables.idempotency;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const clock = options.now;
  // $now: the injected clock, or NULL for the database's clock.
  const NOW = "COALESCE($3::timestamptz, clock_timestamp())";
  const at = (): Date | null => (clock === undefined ? null : new Date(clock()));

  // Claims a free or expired key; otherwise reports what holds it. The outer SELECT reads the
  // row as of the statement's start: a row committed meanwhile reads as absent (tried again).
  const CLAIM = `WITH claimed AS (
      INSERT INTO ${table} AS e (key, token, completed, expires_at)
      VALUES ($1, $2, false, ${NOW} + $4::double precision * interval '1 millisecond')
      ON CONFLICT (key) DO UPDATE
         SET token = excluded.token, completed = false, expires_at = excluded.expires_at
       WHERE e.expires_at <= ${NOW}
      RETURNING e.token
    )
    SELECT (SELECT token FROM claimed) AS claimed,
           (SELECT completed FROM ${table} WHERE key = $1) AS completed`;
  // Unconditional, as in the other stores: the effect happened even if the lease ran out.
  const COMPLETE = `INSERT INTO ${table} AS e (key, token, completed, expires_at)
      VALUES ($1, $2, true, ${NOW} + $4::double precision * interval '1 millisecond')
      ON CONFLICT (key) DO UPDATE
         SET token = excluded.token, completed = true, expires_at = excluded.expires_at`;
  const RELEASE = `DELETE FROM ${table} WHERE key = $1 AND token = $2 AND NOT completed`;
  const RENEW = `UPDATE ${table}
        SET expires_at = ${NOW} + $4::double precision * interval '1 millisecond'
      WHERE key = $1 AND token = $2 AND NOT completed`;

  const run = async (name: string, key: string, sql: string, values: unknown[]) => {
    if (typeof key !== "string") throw storeError(`the ${name} needs a string key.`);
    try {
      return await withTimeout(pool.query(sql, values), timeoutMs, () =>
        storeError(`Postgres did not answer the ${name} of event ${key} within ${timeoutMs} ms.`),
      );
    } catch (error) {
      if (isMappaWebhookError(error)) throw error;
      throw storeError(`the ${name} of event ${key} failed: ${errorMessage(error)}.`, error);
    }
  };

  const tracking = postgresJobTracking(pool, tables.trackedJobs, timeoutMs, clock);

  return {
    table,
    trackedJobsTable: tables.trackedJobs,
    ...tracking,
    async claim(key, { leaseMs }): Promise<ClaimResult> {
      const token = randomUUID();
      for (let attempt = 0; attempt < CLAIM_TRIES; attempt++) {
        const result = await run("claim", key, CLAIM, [key, token, at(), leaseMs]);
        const row = result.rows[0] as { claimed: string | null; completed: boolean | null };
        if (row.claimed === token) return { status: "claimed", token };
        if (row.completed === true) return { status: "completed" };
        if (row.completed === false) return { status: "in_flight" };
        // Absent at our snapshot but not claimable: it changed under us. Look again.
      }
      // Still changing after several looks: someone holds it right now.
      return { status: "in_flight" };
    },
    async complete(key, token, { ttlMs }) {
      await run("complete", key, COMPLETE, [key, token, at(), ttlMs]);
    },
    async release(key, token) {
      await run("release", key, RELEASE, [key, token]);
    },
    async renew(key, token, { leaseMs }) {
      const result = await run("renewal", key, RENEW, [key, token, at(), leaseMs]);
      return (result.rowCount ?? 0) > 0;
    },
  };
}
