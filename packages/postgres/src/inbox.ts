import { randomUUID } from "node:crypto";
import {
  type IdempotencyStore,
  type JobTrackingStore,
  MAPPA_EVENT_TYPES,
  type MappaEvent,
  type MappaHandlerMap,
  type MappaUnknownEvent,
} from "@mappa-webhooks/core";
import {
  countEvents,
  type EventCounts,
  getEvent,
  listFailed,
  type PruneResult,
  prune,
  type ReplayResult,
  replayFailed,
  type StoredEvent,
} from "./admin.js";
import {
  batchInsertSql,
  batchInsertValues,
  createGroupCommit,
  DEFAULT_GROUP_COMMIT,
  type GroupCommitLimits,
  type InboxRow,
  isRowError,
  storedFlags,
} from "./group-commit.js";
import {
  checkDuration,
  checkPool,
  errorMessage,
  hintFor,
  invalidOptions,
  namedStatement,
  type PgPoolLike,
  postgresError,
  runStatement,
  withTimeout,
} from "./pg.js";
import { type PostgresTablesOptions, resolveTables } from "./schema.js";
import { postgresJobTracking } from "./store.js";

/** Jobs remembered as untracked by a claim's insert; past it the set starts again. */
const MAX_UNTRACKED_BY_CLAIM = 10_000;

/**
 * Options of {@link createInbox}.
 *
 * @example
 * ```ts
 * const options: InboxOptions = { pool, schema: "billing", timeoutMs: 3000 };
 * ```
 */
export interface InboxOptions extends PostgresTablesOptions {
  /** A `pg` Pool (or any pool with `query` and `connect`, e.g. Neon's serverless Pool). */
  pool: PgPoolLike;
  /**
   * Longest wait for the insert (and the duplicate check) to commit; then the delivery is
   * answered 500 (503 for the check) and Mappa retries. Default 5000 ms.
   */
  timeoutMs?: number;
  /**
   * Wake the workers with a `NOTIFY` once an insert that stored events has committed (one at a
   * time, shared by the inserts that commit meanwhile). Default `true`; without it workers find
   * new events by polling only.
   */
  notify?: boolean;
  /**
   * Group commit: deliveries that arrive while an insert is in flight share the next one, one
   * multi-row statement and one transaction (one WAL flush for all of them); each is still
   * answered only after the commit that holds its row. A lone delivery is sent at once, with
   * no timer. Default `true`: batches of at most `maxBatch` rows (64), one at a time, and up to
   * `maxInFlight` at once (2, and never more than the pool's `max`) when a full batch waits or
   * the insert in flight has taken over 20 ms (a slow connection). A batch that fails on one
   * row's data is retried row by row, so only that row's delivery fails; a lost connection or
   * a timeout fails the batch's deliveries (500/503, Mappa retries them). `false`: one
   * statement per delivery.
   *
   * @example
   * ```ts
   * createInbox({ pool, groupCommit: { maxBatch: 128, maxInFlight: 4 } });
   * createInbox({ pool, groupCommit: false }); // one INSERT per delivery
   * ```
   */
  groupCommit?: boolean | { maxBatch?: number; maxInFlight?: number };
  /**
   * Send the inserts as named prepared statements, so Postgres parses and plans each once per
   * connection instead of once per delivery (about half its CPU time per stored event).
   * Default `true`: the pool's `query` must take pg's `{ name, text, values }`, as pg, pg-pool
   * and Neon's Pool do. Pass `false` for a pool that takes only `(text, values)`, or behind a
   * pooler in transaction mode that does not track prepared statements (PgBouncer before
   * 1.21, or without `max_prepared_statements`).
   *
   * @example
   * ```ts
   * createInbox({ pool, preparedStatements: false }); // behind PgBouncer 1.20, transaction mode
   * ```
   */
  preparedStatements?: boolean;
}

/**
 * What the receiver's options need: spread `receiverOptions` into them.
 *
 * @example
 * ```ts
 * const { receiverOptions }: { receiverOptions: InboxReceiverOptions } = createInbox({ pool });
 * createMappaWebhooks({ secret, ...receiverOptions });
 * ```
 */
export interface InboxReceiverOptions {
  /** Answers a stored event's re-delivery 200 `duplicate` without storing it again. */
  idempotency: Required<IdempotencyStore> & JobTrackingStore;
  on: MappaHandlerMap;
  onUnknown: (event: MappaUnknownEvent) => Promise<void>;
}

/**
 * Returned by {@link createInbox}.
 *
 * @example
 * ```ts
 * const inbox: Inbox = createInbox({ pool });
 * console.log(await inbox.counts());
 * ```
 */
export interface Inbox {
  /** Spread into any adapter's options: `mappaWebhook({ secret, ...inbox.receiverOptions })`. */
  receiverOptions: InboxReceiverOptions;
  /** Stores one event (pending); `false` when it was stored before (nothing changed). */
  store(event: MappaEvent): Promise<boolean>;
  /** One stored event by its idempotency key. */
  get(key: string): Promise<StoredEvent | undefined>;
  /** Counts by status. */
  counts(): Promise<EventCounts>;
  /** The events parked as failed, newest first. */
  listFailed(options?: { limit?: number }): Promise<StoredEvent[]>;
  /** Failed events back to pending (all, or these keys), attempts reset; wakes the workers. */
  replay(options?: { keys?: readonly string[] }): Promise<ReplayResult>;
  /** Deletes done events older than `olderThanDays`, and expired idempotency keys. */
  prune(options: { olderThanDays: number }): Promise<PruneResult>;
}

const DEFAULT_TIMEOUT_MS = 5000;

/**
 * Inbox mode, durable ack-first: the receiver verifies the event, stores it in one insert and
 * answers 200 as soon as that insert committed. A re-delivery of a stored event is answered
 * 200 `{"received":true,"duplicate":true}` (one `ON CONFLICT` away); concurrent first
 * deliveries store it once. Workers made with {@link createInboxWorker} run the typed handlers
 * transactionally, with retries, and park an event as failed after the last attempt, from
 * where it can be listed and replayed at any time.
 *
 * The answer never waits for handlers, so it stays fast however slow they are; an event
 * answered 200 is in the database, so nothing is lost if the process dies right after.
 * Concurrent deliveries share one insert and one commit (`groupCommit`, on by default).
 *
 * @example
 * ```ts
 * import pg from "pg";
 * import { mappaWebhook } from "@mappa-webhooks/express";
 * import { createInbox, createInboxWorker, migrate } from "@mappa-webhooks/postgres";
 *
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * await migrate({ pool });
 * const inbox = createInbox({ pool });
 * app.post("/webhooks/mappa", mappaWebhook({ secret, ...inbox.receiverOptions }));
 *
 * // In the same process or any other:
 * createInboxWorker({
 *   pool,
 *   on: { "report.completed": async (event, client) => saveReport(client, event.data.reportId) },
 * });
 * ```
 */
export function createInbox(options: InboxOptions): Inbox {
  const api = "createInbox";
  if (options === null || typeof options !== "object")
    throw invalidOptions(api, "needs `{ pool }`.");
  checkPool(api, options.pool);
  checkDuration(api, "timeoutMs", options.timeoutMs);
  if (options.preparedStatements !== undefined && typeof options.preparedStatements !== "boolean") {
    throw invalidOptions(
      api,
      `\`preparedStatements\` must be \`true\` or \`false\`, got ${String(options.preparedStatements)}.`,
    );
  }
  const groupCommit = groupCommitLimits(api, options.groupCommit, options.pool);
  const { pool } = options;
  const t = resolveTables(options);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const notify = options.notify ?? true;
  const admin = { ...options, pool };

  const prepared = options.preparedStatements ?? true;
  // Storing a known event also forgets its job for recovery, in the same statement: once the
  // outcome is in the inbox a worker handles it, so recovery has nothing to ask the API about.
  const UNTRACK_STORED = `untracked AS (
         DELETE FROM ${t.trackedJobs} WHERE $6::text IS NOT NULL AND job_id = $6::text
       )`;
  const INSERT = namedStatement(
    "mappa_inbox_insert",
    `WITH ${UNTRACK_STORED}, stored AS (
       INSERT INTO ${t.events} (key, event_id, type, payload, trace_context)
       VALUES ($1, $2, $3, $4::json, $5::jsonb)
       ON CONFLICT (key) DO NOTHING
       RETURNING key
     )
     SELECT count(*)::int AS stored FROM stored`,
  );
  const wakeWorkers = notify ? createWorkerWakeup(pool, t.channel, timeoutMs, prepared) : () => {};
  const EXISTS = `SELECT 1 FROM ${t.events} WHERE key = $1`;

  const timedOut = () => new Error(`the insert did not commit within ${timeoutMs} ms`);
  const insertOne = async (row: InboxRow): Promise<boolean> => {
    const values = [row.key, row.eventId, row.type, row.payload, row.traceContext, row.jobId];
    const result = await withTimeout(
      runStatement(pool, INSERT, values, prepared),
      timeoutMs,
      timedOut,
    );
    const stored = (result.rows[0] as { stored?: number } | undefined)?.stored === 1;
    if (stored) wakeWorkers();
    return stored;
  };
  const BATCH_INSERT = namedStatement("mappa_inbox_batch", batchInsertSql(t));
  const batcher =
    groupCommit === undefined
      ? undefined
      : createGroupCommit<InboxRow, boolean>({
          limits: groupCommit,
          retrySingly: isRowError,
          expired: timedOut,
          async commit(rows) {
            // A batch of one is the plain insert: a lone delivery costs what it did before.
            if (rows.length === 1) return [await insertOne(rows[0] as InboxRow)];
            const values = batchInsertValues(rows);
            // The batch's own bound frees its slot even when the connection hangs.
            const result = await withTimeout(
              runStatement(pool, BATCH_INSERT, values, prepared),
              timeoutMs,
              timedOut,
            );
            const keys = (result.rows[0] as { keys: string[] | null } | undefined)?.keys ?? [];
            if (keys.length > 0) wakeWorkers();
            return storedFlags(rows, keys);
          },
        });

  /**
   * Inserts the event (pending) unless its key is stored, with the trace context of the
   * delivery that stored it (for the worker's span link); rejects with the driver's error.
   * With group commit, in one statement with the inserts that arrived meanwhile.
   */
  const insert = async (
    event: MappaEvent,
    traceContext?: Readonly<Record<string, string>>,
  ): Promise<{ key: string; stored: boolean }> => {
    const key = event.idempotencyKey ?? `~nokey:${randomUUID()}`;
    const row: InboxRow = {
      key,
      eventId: event.id ?? null,
      type: event.type,
      payload: JSON.stringify(event.raw),
      traceContext: traceContext === undefined ? null : JSON.stringify(traceContext),
      jobId: event.known ? event.data.jobId : null,
    };
    if (batcher === undefined) return { key, stored: await insertOne(row) };
    const stored = await withTimeout(
      batcher.submit(row, performance.now() + timeoutMs),
      timeoutMs,
      timedOut,
    );
    return { key, stored };
  };
  const failure = (
    code: "handler_failed" | "idempotency_store_failed",
    event: MappaEvent,
    cause: unknown,
  ) =>
    postgresError(
      code,
      `could not store event ${event.idempotencyKey ?? event.type} in the inbox: ${errorMessage(cause)}.${hintFor(cause)} Answered ${code === "handler_failed" ? 500 : 503} so Mappa retries the delivery.`,
      { cause },
    );

  const store = async (event: MappaEvent): Promise<boolean> => {
    try {
      return (await insert(event)).stored;
    } catch (cause) {
      throw failure("handler_failed", event, cause);
    }
  };

  /** Keys stored by `claim` itself (a receiver that passes the event): the handler skips them. */
  const storedByClaim = new Set<string>();
  const storeVoid = async (event: MappaEvent) => {
    if (event.idempotencyKey !== undefined && storedByClaim.delete(event.idempotencyKey)) return;
    await store(event);
  };
  const on: MappaHandlerMap = {};
  for (const type of MAPPA_EVENT_TYPES) on[type] = storeVoid;

  // The receiver's store recognises events already in the inbox (200 duplicate); the insert is
  // the claim, so there is nothing to complete, release or renew. A receiver that passes the
  // verified event to `claim` (`{ leaseMs, event }`) gets the insert there: one statement.
  // Tracks jobs too, so createMappaRecovery accepts these receiver options' store.
  const tracking = postgresJobTracking(pool, t.trackedJobs, timeoutMs);
  // Jobs the claim's insert untracked: the receiver's untrack that follows has nothing to do.
  // Bounded: a job left here (its delivery never reached the untrack) only costs one DELETE.
  const untrackedByClaim = new Set<string>();
  const idempotency: Required<IdempotencyStore> & JobTrackingStore = {
    ...tracking,
    async untrack(jobId) {
      if (untrackedByClaim.delete(jobId)) return;
      await tracking.untrack(jobId);
    },
    async claim(key, claimOptions) {
      // A receiver that hands over the verified event lets one statement be the whole ack.
      const event = (claimOptions as { event?: MappaEvent } | undefined)?.event;
      if (event !== undefined && event.idempotencyKey === key) {
        let stored: boolean;
        try {
          stored = (await insert(event, claimOptions?.traceContext)).stored;
        } catch (cause) {
          throw failure("idempotency_store_failed", event, cause);
        }
        if (event.known) {
          if (untrackedByClaim.size >= MAX_UNTRACKED_BY_CLAIM) untrackedByClaim.clear();
          untrackedByClaim.add(event.data.jobId);
        }
        if (!stored) return { status: "completed" };
        storedByClaim.add(key);
        // The delivery's outcome is `stored` (traces, metrics, logs): workers handle it later.
        return { status: "claimed", token: key, stored: true };
      }
      try {
        const result = await withTimeout(
          pool.query(EXISTS, [key]),
          timeoutMs,
          () => new Error(`no answer within ${timeoutMs} ms`),
        );
        return result.rows.length > 0 ? { status: "completed" } : { status: "claimed", token: key };
      } catch (cause) {
        throw postgresError(
          "idempotency_store_failed",
          `could not look up event ${key} in the inbox: ${errorMessage(cause)}.${hintFor(cause)} Answered 503 so Mappa retries the delivery.`,
          { cause },
        );
      }
    },
    async complete(key) {
      storedByClaim.delete(key);
    },
    async release(key) {
      storedByClaim.delete(key);
    },
    async renew() {
      return true;
    },
  };

  return {
    receiverOptions: { idempotency, on, onUnknown: storeVoid },
    store,
    get: (key) => getEvent(admin, key),
    counts: () => countEvents(admin),
    listFailed: (listOptions = {}) => listFailed({ ...admin, ...listOptions }),
    replay: (replayOptions = {}) => replayFailed({ ...admin, ...replayOptions }),
    prune: (pruneOptions) => prune({ ...admin, ...pruneOptions }),
  };
}

/**
 * The shortest gap between two wake-ups: under load the inserts that commit within it share
 * one NOTIFY (a statement costs the receiver about as much as a tenth of a delivery), and an
 * idle worker waits at most this long more than it would have.
 */
const WAKE_INTERVAL_MS = 5;

/**
 * Wakes the workers after an insert that stored events has committed, in a statement of its
 * own: a transaction that notifies holds a server-wide lock (one for every database) until its
 * commit is flushed, so inserts that notified would commit one flush at a time. It is sent
 * after their commit, so the woken workers see their rows; one is in flight at once, at most
 * one per {@link WAKE_INTERVAL_MS}, and the inserts that commit meanwhile share the next. A
 * failed wake-up is dropped: workers still poll.
 */
function createWorkerWakeup(
  pool: PgPoolLike,
  channel: string,
  timeoutMs: number,
  prepared: boolean,
): () => void {
  const WAKE = namedStatement("mappa_inbox_wake", "SELECT pg_notify($1, '')");
  /** A wake-up is scheduled or in flight. */
  let pending = false;
  /** A commit landed after the pending wake-up was sent: another one follows it. */
  let again = false;
  let lastSent = Number.NEGATIVE_INFINITY;
  const schedule = () => {
    pending = true;
    const wait = lastSent + WAKE_INTERVAL_MS - performance.now();
    if (wait > 0) setTimeout(send, wait).unref?.();
    else send();
  };
  const send = () => {
    again = false;
    lastSent = performance.now();
    withTimeout(
      runStatement(pool, WAKE, [channel], prepared),
      timeoutMs,
      () => new Error(`the wake-up did not answer within ${timeoutMs} ms`),
    )
      .catch(() => {})
      .finally(() => {
        if (again) schedule();
        else pending = false;
      });
  };
  return () => {
    if (pending) again = true;
    else schedule();
  };
}

/**
 * The group commit limits `option` asks for (`undefined`: off), checked, with `maxInFlight`
 * never above the pool's own `max` when the pool tells it.
 */
function groupCommitLimits(
  api: string,
  option: InboxOptions["groupCommit"],
  pool: unknown,
): GroupCommitLimits | undefined {
  if (option === false) return undefined;
  if (option !== undefined && option !== true && (option === null || typeof option !== "object")) {
    throw invalidOptions(
      api,
      `\`groupCommit\` must be \`true\`, \`false\` or \`{ maxBatch, maxInFlight }\`, got ${String(option)}.`,
    );
  }
  const given = typeof option === "object" ? option : {};
  for (const name of ["maxBatch", "maxInFlight"] as const) {
    const value = given[name];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
      throw invalidOptions(
        api,
        `\`groupCommit.${name}\` must be a whole number of at least 1, got ${String(value)}.`,
      );
    }
  }
  const poolMax = (pool as { options?: { max?: unknown } }).options?.max;
  const maxInFlight = given.maxInFlight ?? DEFAULT_GROUP_COMMIT.maxInFlight;
  return {
    maxBatch: given.maxBatch ?? DEFAULT_GROUP_COMMIT.maxBatch,
    stallMs: DEFAULT_GROUP_COMMIT.stallMs,
    maxInFlight:
      typeof poolMax === "number" && Number.isSafeInteger(poolMax) && poolMax >= 1
        ? Math.min(maxInFlight, poolMax)
        : maxInFlight,
  };
}
