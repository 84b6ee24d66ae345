import { randomUUID } from "node:crypto";
import type {
  ClaimResult,
  IdempotencyStore,
  JobTrackingStore,
  TrackedJob,
} from "@mappa-webhooks/core";
import { errorMessage, retryBusy, type SqliteConnection } from "./driver.js";
import {
  checkDatabaseOptions,
  DEFAULT_TIMEOUT_MS,
  invalidOptions,
  lazyConnection,
  type SqliteDatabaseOptions,
  storeFailed,
} from "./open.js";
import { resolveTables } from "./schema.js";

/**
 * Options of {@link createSqliteIdempotencyStore}.
 *
 * @example
 * ```ts
 * const options: SqliteIdempotencyStoreOptions = { database: "./data/mappa-webhooks.db" };
 * ```
 */
export interface SqliteIdempotencyStoreOptions extends SqliteDatabaseOptions {
  /**
   * The clock for leases and TTLs, in milliseconds. Default `Date.now`: every process on the
   * machine shares it. Pass one only in tests.
   */
  now?: () => number;
}

/**
 * The SQLite idempotency store, with the table it uses. It also tracks jobs for
 * `createMappaRecovery` ({@link JobTrackingStore}), in a table next to it.
 *
 * @example
 * ```ts
 * const store: SqliteIdempotencyStore = createSqliteIdempotencyStore({ database: "./mappa.db" });
 * console.log(store.table); // "mappa_webhooks_idempotency"
 * ```
 */
export interface SqliteIdempotencyStore extends Required<IdempotencyStore>, JobTrackingStore {
  /** The quoted table name, e.g. `"mappa_webhooks_idempotency"`. */
  readonly table: string;
  /** The quoted table of tracked jobs, e.g. `"mappa_webhooks_tracked_jobs"`. */
  readonly trackedJobsTable: string;
  /** Resolves with the open connection once the file is open and the tables exist. */
  ready(): Promise<SqliteConnection>;
  /** Closes the connection (only one this store opened from a file name). */
  close(): Promise<void>;
}

/** Options of {@link sqliteJobTracking}. */
export interface SqliteJobTrackingOptions {
  timeoutMs: number;
  /** The clock of a default `trackedAt`. Default `Date.now`. */
  now?: () => number;
  /**
   * Runs each statement in the caller's turn on a shared connection (the transactional
   * handlers' queue), so it never lands inside another event's open transaction.
   */
  exclusive?: <T>(work: () => Promise<T>) => Promise<T>;
}

/**
 * Job tracking in the tracked jobs table (created with the other tables): one row per job,
 * listed in job id order. Shared by the idempotency store and the transactional handlers, so
 * `createMappaRecovery` accepts the receiver's store of each.
 */
export function sqliteJobTracking(
  connect: () => Promise<SqliteConnection>,
  table: string,
  options: SqliteJobTrackingOptions,
): JobTrackingStore {
  const { timeoutMs } = options;
  const clock = options.now ?? Date.now;
  const exclusive = options.exclusive ?? (<T>(work: () => Promise<T>) => work());
  const TRACK = `INSERT INTO ${table} (job_id, tracked_at) VALUES (?, ?)
      ON CONFLICT (job_id) DO NOTHING`;
  const UNTRACK = `DELETE FROM ${table} WHERE job_id = ?`;
  const LIST = `SELECT job_id, tracked_at FROM ${table} ORDER BY job_id LIMIT ?`;
  const LIST_AFTER = `SELECT job_id, tracked_at FROM ${table} WHERE job_id > ?
      ORDER BY job_id LIMIT ?`;
  const run = async <T>(name: string, work: (c: SqliteConnection) => T): Promise<T> => {
    try {
      const connection = await connect();
      return await exclusive(() => retryBusy(() => work(connection), timeoutMs));
    } catch (error) {
      throw storeFailed(`the ${name} failed: ${errorMessage(error)}.`, error);
    }
  };
  const checkJobId = (name: string, jobId: unknown) => {
    if (typeof jobId !== "string" || jobId === "") {
      throw invalidOptions(name, `needs a non-empty string job id, got ${String(jobId)}.`);
    }
  };
  return {
    async track(jobId, trackOptions = {}) {
      checkJobId("track", jobId);
      const trackedAt = Math.round(trackOptions.trackedAt ?? clock());
      await run(`tracking of job ${jobId}`, (c) => c.run(TRACK, [jobId, trackedAt]));
    },
    async untrack(jobId) {
      checkJobId("untrack", jobId);
      await run(`untracking of job ${jobId}`, (c) => c.run(UNTRACK, [jobId]));
    },
    async tracked({ limit, after }): Promise<TrackedJob[]> {
      if (!Number.isInteger(limit) || limit < 1) {
        throw invalidOptions("tracked", `needs a positive integer limit, got ${String(limit)}.`);
      }
      const rows = await run("listing of tracked jobs", (c) =>
        after === undefined
          ? c.all<{ job_id: string; tracked_at: number | bigint }>(LIST, [limit])
          : c.all<{ job_id: string; tracked_at: number | bigint }>(LIST_AFTER, [after, limit]),
      );
      return rows.map((row) => ({ jobId: String(row.job_id), trackedAt: Number(row.tracked_at) }));
    },
  };
}

/** Expired keys are deleted by every this-many completions, a few at a time. */
const SWEEP_EVERY = 64;
const SWEEP_BATCH = 256;

/**
 * An {@link IdempotencyStore} in an SQLite file: the embedded default for one machine. Dedup
 * survives a restart, and every process on the machine that opens the same file shares it
 * (WAL mode; a locked write is retried without blocking the event loop). The same contract as
 * the core's memory store, `@mappa-webhooks/redis` and `@mappa-webhooks/postgres`: a delivery
 * claims the event with a lease (owner token + expiry), renews it while handlers run,
 * completes it for the completed TTL or releases it after a failure. Each step is one short
 * write transaction (`BEGIN IMMEDIATE`), so it is atomic across processes.
 *
 * Use it when the handlers' effects live outside this file. When they write to the same
 * SQLite database, prefer {@link createTransactionalHandlers}: the done mark then commits
 * together with the writes.
 *
 * @example
 * ```ts
 * import { mappaWebhook } from "@mappa-webhooks/express";
 * import { createSqliteIdempotencyStore } from "@mappa-webhooks/sqlite";
 *
 * const idempotency = createSqliteIdempotencyStore({ database: "./data/mappa-webhooks.db" });
 * app.post("/webhooks/mappa", mappaWebhook({ secret, idempotency, on: handlers }));
 * ```
 */
export function createSqliteIdempotencyStore(
  options: SqliteIdempotencyStoreOptions,
): SqliteIdempotencyStore {
  const api = "createSqliteIdempotencyStore";
  checkDatabaseOptions(api, options);
  if (options.now !== undefined && typeof options.now !== "function") {
    throw invalidOptions(api, "`now` must be a function returning milliseconds.");
  }
  const tables = resolveTables(options);
  const table = tables.idempotency;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const clock = options.now ?? Date.now;
  const connect = lazyConnection(options);
  const tracking = sqliteJobTracking(connect, tables.trackedJobs, { timeoutMs, now: clock });
  const ownsConnection = typeof options.database === "string";
  let completions = 0;

  const CLAIM = `INSERT INTO ${table} (key, token, completed, expires_at) VALUES (?, ?, 0, ?)
      ON CONFLICT (key) DO UPDATE
         SET token = excluded.token, completed = 0, expires_at = excluded.expires_at
       WHERE expires_at <= ?`;
  const STATUS = `SELECT completed FROM ${table} WHERE key = ?`;
  // Unconditional, as in the other stores: the effect happened even if the lease ran out.
  const COMPLETE = `INSERT INTO ${table} (key, token, completed, expires_at) VALUES (?, ?, 1, ?)
      ON CONFLICT (key) DO UPDATE
         SET token = excluded.token, completed = 1, expires_at = excluded.expires_at`;
  const RELEASE = `DELETE FROM ${table} WHERE key = ? AND token = ? AND completed = 0`;
  const RENEW = `UPDATE ${table} SET expires_at = ?
      WHERE key = ? AND token = ? AND completed = 0`;
  const SWEEP = `DELETE FROM ${table} WHERE key IN
      (SELECT key FROM ${table} WHERE expires_at <= ? LIMIT ${SWEEP_BATCH})`;

  /** Runs `work` on the connection, retrying while another process holds the write lock. */
  const run = async <T>(name: string, key: string, work: (c: SqliteConnection) => T) => {
    if (typeof key !== "string") throw storeFailed(`the ${name} needs a string key.`);
    try {
      const connection = await connect();
      return await retryBusy(() => work(connection), timeoutMs);
    } catch (error) {
      throw storeFailed(`the ${name} of event ${key} failed: ${errorMessage(error)}.`, error);
    }
  };

  return {
    table,
    trackedJobsTable: tables.trackedJobs,
    ...tracking,
    ready: connect,
    async close() {
      if (!ownsConnection) return;
      const connection = await connect().catch(() => undefined);
      connection?.close();
    },
    async claim(key, { leaseMs }): Promise<ClaimResult> {
      const token = randomUUID();
      return run("claim", key, (c) => {
        const now = clock();
        // One write transaction: the upsert and the look that explains a refusal.
        c.exec("BEGIN IMMEDIATE");
        try {
          const { changes } = c.run(CLAIM, [key, token, now + leaseMs, now]);
          const row = changes > 0 ? undefined : c.get<{ completed: number }>(STATUS, [key]);
          c.exec("COMMIT");
          if (changes > 0) return { status: "claimed", token } as const;
          return { status: Number(row?.completed) === 1 ? "completed" : "in_flight" } as const;
        } catch (error) {
          rollback(c);
          throw error;
        }
      });
    },
    async complete(key, token, { ttlMs }) {
      await run("complete", key, (c) => {
        const now = clock();
        c.run(COMPLETE, [key, token, now + ttlMs]);
        if (++completions % SWEEP_EVERY === 0) {
          try {
            c.run(SWEEP, [now]);
          } catch {
            // Tidying only: the next sweep deletes them.
          }
        }
      });
    },
    async release(key, token) {
      await run("release", key, (c) => {
        c.run(RELEASE, [key, token]);
      });
    },
    async renew(key, token, { leaseMs }) {
      return run("renewal", key, (c) => {
        const now = clock();
        return c.run(RENEW, [now + leaseMs, key, token]).changes > 0;
      });
    },
  };
}

/** Rolls back the open transaction, if any; never throws. */
export function rollback(connection: SqliteConnection): void {
  try {
    connection.exec("ROLLBACK");
  } catch {
    // No transaction was open (SQLite rolled it back itself).
  }
}
