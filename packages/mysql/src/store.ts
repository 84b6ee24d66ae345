import { randomUUID } from "node:crypto";
import type {
  ClaimResult,
  IdempotencyStore,
  JobTrackingStore,
  TrackedJob,
} from "@mappa-webhooks/core";
import {
  checkPool,
  checkPositive,
  errorMessage,
  invalidOptions,
  MAX_KEY_LENGTH,
  type MysqlPoolLike,
  matchedRows,
  rowsOf,
  storeFailed,
  withTimeout,
} from "./mysql.js";
import { MAX_JOB_ID_BYTES, type MysqlTablesOptions, resolveTables } from "./schema.js";

/**
 * Options of {@link createMysqlIdempotencyStore}.
 *
 * @example
 * ```ts
 * const options: MysqlIdempotencyStoreOptions = { pool, timeoutMs: 2000 };
 * ```
 */
export interface MysqlIdempotencyStoreOptions extends MysqlTablesOptions {
  /** A mysql2/promise Pool (`mysql.createPool(url)` from `"mysql2/promise"`). */
  pool: MysqlPoolLike;
  /** Longest one query may take before `idempotency_store_failed` (503). Default 5000 ms. */
  timeoutMs?: number;
  /**
   * The clock for leases and TTLs, in milliseconds. Default: the database's clock
   * (`NOW(3)`), which every instance shares. Pass one only in tests.
   */
  now?: () => number;
}

/**
 * The MySQL idempotency store, with the table it uses. It also tracks jobs for
 * `createMappaRecovery` ({@link JobTrackingStore}), in a table next to it.
 *
 * @example
 * ```ts
 * const store: MysqlIdempotencyStore = createMysqlIdempotencyStore({ pool });
 * console.log(store.table); // `mappa_webhooks_idempotency`
 * ```
 */
export interface MysqlIdempotencyStore extends Required<IdempotencyStore>, JobTrackingStore {
  /** The quoted table name. */
  readonly table: string;
  /** The quoted table of tracked jobs, e.g. `` `mappa_webhooks_tracked_jobs` ``. */
  readonly trackedJobsTable: string;
}

/** A deadlock InnoDB resolved by rolling one statement back: safe to run that statement again. */
const ER_LOCK_DEADLOCK = 1213;
const TRACKING_TRIES = 5;

/**
 * Job tracking in the tracked jobs table (created by `migrate`): one row per job, listed in
 * job id order (its UTF-8 bytes). Shared by the idempotency store and the transactional
 * handlers, so `createMappaRecovery` accepts the receiver's store of each.
 */
export function mysqlJobTracking(
  pool: MysqlPoolLike,
  table: string,
  timeoutMs: number,
  now: () => number = Date.now,
): JobTrackingStore {
  const TRACK = `INSERT INTO ${table} (job_id, tracked_at) VALUES (?, ?)
      ON DUPLICATE KEY UPDATE tracked_at = tracked_at`;
  const UNTRACK = `DELETE FROM ${table} WHERE job_id = ?`;
  const LIST = `SELECT job_id, tracked_at FROM ${table} ORDER BY job_id LIMIT ?`;
  const LIST_AFTER = `SELECT job_id, tracked_at FROM ${table} WHERE job_id > ?
      ORDER BY job_id LIMIT ?`;
  const run = async (name: string, sql: string, values: unknown[]) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await withTimeout(pool.query(sql, values), timeoutMs, () =>
          storeFailed(`MySQL did not answer the ${name} within ${timeoutMs} ms.`),
        );
      } catch (error) {
        if ((error as { code?: unknown }).code === "idempotency_store_failed") throw error;
        const errno = (error as { errno?: unknown }).errno;
        if (errno === ER_LOCK_DEADLOCK && attempt < TRACKING_TRIES) continue;
        throw storeFailed(`the ${name} failed: ${errorMessage(error)}.`, error);
      }
    }
  };
  const checkJobId = (name: string, jobId: unknown) => {
    if (typeof jobId !== "string" || jobId === "") {
      throw invalidOptions(name, `needs a non-empty string job id, got ${String(jobId)}.`);
    }
    if (Buffer.byteLength(jobId) > MAX_JOB_ID_BYTES) {
      throw storeFailed(
        `the ${name} of a job id longer than ${MAX_JOB_ID_BYTES} bytes is not stored.`,
      );
    }
  };
  const text = (value: unknown) =>
    Buffer.isBuffer(value) ? value.toString("utf8") : String(value);
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
      const result =
        after === undefined
          ? await run("listing of tracked jobs", LIST, [limit])
          : await run("listing of tracked jobs", LIST_AFTER, [after, limit]);
      return rowsOf<{ job_id: unknown; tracked_at: unknown }>(result).map((row) => ({
        jobId: text(row.job_id),
        trackedAt: Number(row.tracked_at),
      }));
    },
  };
}

const DEFAULT_TIMEOUT_MS = 5000;
const CLAIM_TRIES = 3;

/**
 * An {@link IdempotencyStore} on MySQL or MariaDB, shared by every instance of a receiver, with
 * the same contract as the core's memory store, `@mappa-webhooks/redis` and
 * `@mappa-webhooks/postgres`: a delivery claims the event with a lease (owner token + expiry),
 * renews it while handlers run, completes it for the completed TTL or releases it after a
 * failure. One row per key; every change is one atomic statement; times come from the
 * database's clock, shared by all instances.
 *
 * Use it when the handlers' effects live outside this database. When they write to it,
 * prefer {@link createTransactionalHandlers}: the done mark then commits with the writes.
 *
 * @example
 * ```ts
 * import mysql from "mysql2/promise";
 * import { mappaWebhook } from "@mappa-webhooks/express";
 * import { createMysqlIdempotencyStore, migrate } from "@mappa-webhooks/mysql";
 *
 * const pool = mysql.createPool(process.env.MYSQL_URL!);
 * await migrate({ pool });
 * const idempotency = createMysqlIdempotencyStore({ pool });
 * app.post("/webhooks/mappa", mappaWebhook({ secret, idempotency, on: handlers }));
 * ```
 */
export function createMysqlIdempotencyStore(
  options: MysqlIdempotencyStoreOptions,
): MysqlIdempotencyStore {
  const api = "createMysqlIdempotencyStore";
  if (options === null || typeof options !== "object")
    throw invalidOptions(api, "needs `{ pool }`.");
  checkPool(api, options.pool);
  checkPositive(api, "timeoutMs", options.timeoutMs);
  if (options.now !== undefined && typeof options.now !== "function") {
    throw invalidOptions(api, "`now` must be a function returning milliseconds.");
  }
  const { pool } = options;
  const tables = resolveTables(options);
  const table = tables.idempotency;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const clock = options.now;
  // The injected clock, or NULL for the database's (NOW(3) is fixed within a statement).
  const NOW = "COALESCE(?, CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED))";
  const at = (): number | null => (clock === undefined ? null : Math.round(clock()));

  // Takes a free or expired key; a live one is left as it is (the IFs read the old row).
  const CLAIM = `INSERT INTO ${table} (event_key, token, completed, expires_at)
      VALUES (?, ?, 0, ${NOW} + ?)
      ON DUPLICATE KEY UPDATE
        token = IF(expires_at <= ${NOW}, ?, token),
        completed = IF(expires_at <= ${NOW}, 0, completed),
        expires_at = IF(expires_at <= ${NOW}, ${NOW} + ?, expires_at)`;
  const LOOK = `SELECT token, completed FROM ${table} WHERE event_key = ?`;
  // Unconditional, as in the other stores: the effect happened even if the lease ran out.
  const COMPLETE = `INSERT INTO ${table} (event_key, token, completed, expires_at)
      VALUES (?, ?, 1, ${NOW} + ?)
      ON DUPLICATE KEY UPDATE token = ?, completed = 1, expires_at = ${NOW} + ?`;
  const RELEASE = `DELETE FROM ${table} WHERE event_key = ? AND token = ? AND completed = 0`;
  const RENEW = `UPDATE ${table} SET expires_at = ${NOW} + ?
      WHERE event_key = ? AND token = ? AND completed = 0`;

  const run = async (name: string, key: string, sql: string, values: unknown[]) => {
    if (typeof key !== "string") throw storeFailed(`the ${name} needs a string key.`);
    if (key.length > MAX_KEY_LENGTH) {
      throw storeFailed(
        `the ${name} of a key longer than ${MAX_KEY_LENGTH} characters is not stored.`,
      );
    }
    try {
      return await withTimeout(pool.query(sql, values), timeoutMs, () =>
        storeFailed(`MySQL did not answer the ${name} of event ${key} within ${timeoutMs} ms.`),
      );
    } catch (error) {
      if ((error as { code?: unknown }).code === "idempotency_store_failed") throw error;
      throw storeFailed(`the ${name} of event ${key} failed: ${errorMessage(error)}.`, error);
    }
  };

  const tracking = mysqlJobTracking(
    pool,
    tables.trackedJobs,
    timeoutMs,
    clock === undefined ? Date.now : clock,
  );

  return {
    table,
    trackedJobsTable: tables.trackedJobs,
    ...tracking,
    async claim(key, { leaseMs }): Promise<ClaimResult> {
      const token = randomUUID();
      const lease = Math.ceil(leaseMs);
      for (let attempt = 0; attempt < CLAIM_TRIES; attempt++) {
        const now = at();
        await run("claim", key, CLAIM, [key, token, now, lease, now, token, now, now, now, lease]);
        const [row] = rowsOf<{ token: string; completed: number }>(
          await run("claim", key, LOOK, [key]),
        );
        if (row === undefined) continue; // Released meanwhile: claim again.
        if (row.token === token) return { status: "claimed", token };
        return { status: Number(row.completed) === 1 ? "completed" : "in_flight" };
      }
      return { status: "in_flight" };
    },
    async complete(key, token, { ttlMs }) {
      const now = at();
      const ttl = Math.ceil(ttlMs);
      await run("complete", key, COMPLETE, [key, token, now, ttl, token, now, ttl]);
    },
    async release(key, token) {
      await run("release", key, RELEASE, [key, token]);
    },
    async renew(key, token, { leaseMs }) {
      const result = await run("renewal", key, RENEW, [at(), Math.ceil(leaseMs), key, token]);
      return matchedRows(result) > 0;
    },
  };
}
