import {
  type MappaEvent,
  type MappaHandlerMap,
  type MappaUnknownEvent,
  MappaWebhookError,
  parseEvent,
} from "@mappa-webhooks/core";
import {
  checkPool,
  checkPositive,
  errorMessage,
  hintFor,
  invalidOptions,
  type PgClientLike,
  type PgNotification,
  type PgPoolLike,
  type PoolClientOf,
} from "./pg.js";
import { type PostgresTablesOptions, quoteIdentifier, resolveTables } from "./schema.js";
import { handlerFor } from "./transaction.js";

/**
 * Wait before attempt `attempt + 1`, after `attempt` failed attempts (1, 2, ...).
 *
 * @example
 * ```ts
 * const everyMinute: InboxBackoff = () => 60_000;
 * ```
 */
export type InboxBackoff = (attempt: number) => number;

/**
 * What `onError` of a worker receives besides the error.
 *
 * @example
 * ```ts
 * onError: (error, info: InboxWorkerErrorInfo) => {
 *   if (info.outcome === "failed") alert(`${info.key} parked: ${error.message}`);
 * },
 * ```
 */
export interface InboxWorkerErrorInfo {
  /** The event's key, when the error concerns one event. */
  key?: string;
  /** The parsed event, when it could be parsed. */
  event?: MappaEvent;
  /** Attempts made, this one included. */
  attempts?: number;
  /** `"retry"`: it will be tried again; `"failed"`: parked as failed; `"worker"`: not about one event (e.g. the database went away). */
  outcome: "retry" | "failed" | "worker";
}

/**
 * Options of {@link createInboxWorker}.
 *
 * @example
 * ```ts
 * const options: InboxWorkerOptions<pg.Pool> = { pool, concurrency: 4, maxAttempts: 20 };
 * ```
 */
export interface InboxWorkerOptions<TPool extends PgPoolLike = PgPoolLike>
  extends PostgresTablesOptions {
  /** A `pg` Pool; give it at least `concurrency + 1` connections (one listens for NOTIFY). */
  pool: TPool;
  /**
   * Handlers by event type, narrowed as in the receiver; the second argument is the client of
   * the event's transaction. What they write commits together with the event's done mark.
   */
  on?: MappaHandlerMap<PoolClientOf<TPool>>;
  /** Event types this package does not know; without it they are marked done unhandled. */
  onUnknown?: (event: MappaUnknownEvent, client: PoolClientOf<TPool>) => unknown;
  /** Events handled at once by this worker (one connection each). Default 1. */
  concurrency?: number;
  /**
   * Events each slot takes and commits together (each handler in a savepoint of its own, so a
   * failure still affects only its event). More than 1 saves commits (WAL flushes) when
   * handlers are quick; a crash then rolls the whole batch back, to be taken again. Default 1.
   */
  batchSize?: number;
  /** Attempts before an event is parked as failed. Default 10. */
  maxAttempts?: number;
  /**
   * Wait before the next attempt, by failed attempts so far. Default exponential: 1 s, 2 s,
   * 4 s, ... capped at 15 min (10 attempts span about 17 minutes).
   */
  backoff?: InboxBackoff;
  /** How often an idle worker looks for due events without a NOTIFY. Default 1000 ms. */
  pollIntervalMs?: number;
  /** Wake up on `LISTEN`/`NOTIFY` (one extra connection). Default `true`. */
  listen?: boolean;
  /**
   * A worker whose transaction sits idle this long (a frozen or cut-off process) is ended by
   * Postgres, which releases its event to another worker. Handlers that work outside the
   * database for longer need a larger value. Default 300 000 ms (5 min).
   */
  lockTimeoutMs?: number;
  /** Every failure: handler errors (with what happens next) and database errors. Never throws back. */
  onError?: (error: Error, info: InboxWorkerErrorInfo) => void;
}

/**
 * Counts since the worker started.
 *
 * @example
 * ```ts
 * const { done, retried, failed }: InboxWorkerStats = worker.stats;
 * ```
 */
export interface InboxWorkerStats {
  /** Events handled and committed. */
  done: number;
  /** Failed attempts that will be retried. */
  retried: number;
  /** Events parked as failed. */
  failed: number;
}

/**
 * Returned by {@link createInboxWorker}.
 *
 * @example
 * ```ts
 * const worker: InboxWorker = createInboxWorker({ pool, on });
 * await worker.ready;
 * process.on("SIGTERM", () => worker.close());
 * ```
 */
export interface InboxWorker {
  /** Resolves once the worker listens for NOTIFY (or at once with `listen: false`). */
  readonly ready: Promise<void>;
  readonly stats: Readonly<InboxWorkerStats>;
  /** Stops taking events, waits for the ones running, gives the connections back. */
  close(): Promise<void>;
}

/**
 * Exponential backoff: `baseMs` doubled per failed attempt, at most `maxMs`.
 *
 * @example
 * ```ts
 * createInboxWorker({ pool, on, backoff: exponentialBackoff(5000, 60 * 60_000) }); // 5 s, 10 s, ... 1 h
 * ```
 */
export function exponentialBackoff(baseMs = 1000, maxMs = 15 * 60 * 1000): InboxBackoff {
  return (attempt) => Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

const DEFAULT_MAX_ATTEMPTS = 10;
const DEFAULT_POLL_MS = 1000;
const DEFAULT_LOCK_TIMEOUT_MS = 300_000;
const MAX_ERROR_LENGTH = 2000;

interface PickedRow {
  key: string;
  payload: unknown;
  attempts: number;
}

/**
 * A worker for the inbox: takes due events with `FOR UPDATE SKIP LOCKED` (any number of
 * workers share the table, none takes an event another holds), woken by `LISTEN`/`NOTIFY` with
 * polling as the fallback. Each event runs in one transaction: the handler gets its client,
 * and its writes commit together with the done mark. A handler that throws rolls its writes
 * back; the event is retried after the backoff, and parked as failed after `maxAttempts`
 * (list and replay them with {@link listFailed} / {@link replayFailed} or the CLI). A worker
 * that dies mid-event leaves nothing behind: Postgres rolls its transaction back and the event
 * is taken by another worker at once.
 *
 * @example
 * ```ts
 * import pg from "pg";
 * import { createInboxWorker } from "@mappa-webhooks/postgres";
 *
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 5 });
 * const worker = createInboxWorker({
 *   pool,
 *   concurrency: 4,
 *   on: {
 *     "report.completed": async (event, client) => {
 *       await client.query("INSERT INTO reports (id) VALUES ($1)", [event.data.reportId]);
 *     },
 *   },
 * });
 * process.on("SIGTERM", () => worker.close());
 * ```
 */
export function createInboxWorker<TPool extends PgPoolLike>(
  options: InboxWorkerOptions<TPool>,
): InboxWorker {
  type TClient = PgClientLike;
  const api = "createInboxWorker";
  if (options === null || typeof options !== "object")
    throw invalidOptions(api, "needs `{ pool }`.");
  checkPool(api, options.pool);
  for (const name of [
    "concurrency",
    "batchSize",
    "maxAttempts",
    "pollIntervalMs",
    "lockTimeoutMs",
  ] as const) {
    checkPositive(api, name, options[name]);
  }
  const concurrency = Math.floor(options.concurrency ?? 1);
  const maxAttempts = Math.floor(options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
  const batchSize = Math.floor(options.batchSize ?? 1);
  if (concurrency < 1 || maxAttempts < 1 || batchSize < 1) {
    throw invalidOptions(api, "`concurrency`, `batchSize` and `maxAttempts` must be at least 1.");
  }
  if (options.backoff !== undefined && typeof options.backoff !== "function") {
    throw invalidOptions(api, "`backoff` must be a function of the attempt number returning ms.");
  }
  const on = (options.on ?? {}) as MappaHandlerMap<TClient>;
  const onUnknown = options.onUnknown as
    | ((event: MappaUnknownEvent, client: TClient) => unknown)
    | undefined;
  for (const [type, handler] of Object.entries(on)) {
    if (typeof handler !== "function") {
      throw invalidOptions(api, `the handler for "${type}" in \`on\` is not a function.`);
    }
  }
  const pool = options.pool as PgPoolLike;
  const t = resolveTables(options);
  const backoff = options.backoff ?? exponentialBackoff();
  const pollMs = options.pollIntervalMs ?? DEFAULT_POLL_MS;
  const lockTimeoutMs = Math.ceil(options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
  const stats: InboxWorkerStats = { done: 0, retried: 0, failed: 0 };

  const SQL = {
    begin: `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL idle_in_transaction_session_timeout = ${lockTimeoutMs}`,
    pick: `SELECT key, payload, attempts FROM ${t.events}
            WHERE status = 'pending' AND run_at <= clock_timestamp()
            ORDER BY run_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED`,
    done: `UPDATE ${t.events}
              SET status = 'done', attempts = attempts + 1, last_error = NULL,
                  done_at = clock_timestamp(), updated_at = clock_timestamp()
            WHERE key = $1`,
    retry: `UPDATE ${t.events}
               SET attempts = attempts + 1, last_error = $2, updated_at = clock_timestamp(),
                   run_at = clock_timestamp() + $3::double precision * interval '1 millisecond'
             WHERE key = $1`,
    fail: `UPDATE ${t.events}
              SET status = 'failed', attempts = attempts + 1, last_error = $2,
                  updated_at = clock_timestamp()
            WHERE key = $1`,
  };

  const report = (error: unknown, info: InboxWorkerErrorInfo) => {
    if (options.onError === undefined) return;
    try {
      options.onError(error instanceof Error ? error : new Error(String(error)), info);
    } catch {
      // onError must never stop the worker.
    }
  };

  let closing = false;
  // Wake-ups: a counter so a NOTIFY that arrives while a slot is busy is not missed.
  let generation = 0;
  const sleepers = new Set<() => void>();
  const wakeAll = () => {
    generation++;
    for (const wake of [...sleepers]) wake();
  };
  const sleep = (ms: number, seen: number) =>
    new Promise<void>((resolve) => {
      if (closing || generation !== seen) return resolve();
      const done = () => {
        clearTimeout(timer);
        sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      sleepers.add(done);
    });

  /** Handles one picked row inside the open transaction; what to count and report after the commit. */
  const handleRow = async (client: TClient, row: PickedRow): Promise<() => void> => {
    const attempts = row.attempts + 1;
    let event: MappaEvent;
    try {
      event = parseEvent(JSON.stringify(row.payload));
    } catch (error) {
      // Retrying cannot help an event that does not parse: park it at once.
      const message = `not a Mappa event: ${errorMessage(error)}`;
      await client.query(SQL.fail, [row.key, message.slice(0, MAX_ERROR_LENGTH)]);
      return () => {
        stats.failed++;
        report(error, { key: row.key, attempts, outcome: "failed" });
      };
    }
    await client.query("SAVEPOINT mappa_handler");
    try {
      const handler = handlerFor(on, onUnknown, event);
      if (handler !== undefined) await handler(event, client);
    } catch (error) {
      // The handler's writes go; the row lock stays, so the failure is recorded before any
      // other worker can see the event again.
      await client.query("ROLLBACK TO SAVEPOINT mappa_handler");
      if (batchSize > 1) await client.query("RELEASE SAVEPOINT mappa_handler");
      const message = errorMessage(error).slice(0, MAX_ERROR_LENGTH);
      if (attempts >= maxAttempts) {
        await client.query(SQL.fail, [row.key, message]);
        return () => {
          stats.failed++;
          report(error, { key: row.key, event, attempts, outcome: "failed" });
        };
      }
      const delay = Math.max(0, Number(backoff(attempts)) || 0);
      await client.query(SQL.retry, [row.key, message, delay]);
      return () => {
        stats.retried++;
        report(error, { key: row.key, event, attempts, outcome: "retry" });
      };
    }
    if (batchSize > 1) await client.query("RELEASE SAVEPOINT mappa_handler");
    await client.query(SQL.done, [row.key]);
    return () => {
      stats.done++;
    };
  };

  /** Takes up to `batchSize` due events and handles them in one transaction; false when none was due. */
  const processBatch = async (): Promise<boolean> => {
    const client = (await pool.connect()) as TClient;
    let broken: Error | undefined;
    const onClientError = (error: Error) => {
      broken = error;
    };
    client.on?.("error", onClientError);
    let failure: unknown;
    try {
      await client.query(SQL.begin);
      const picked = await client.query(SQL.pick, [batchSize]);
      const rows = picked.rows as PickedRow[];
      if (rows.length === 0) {
        await client.query("COMMIT");
        return false;
      }
      const outcomes: Array<() => void> = [];
      for (const row of rows) outcomes.push(await handleRow(client, row));
      await client.query("COMMIT");
      // Counted and reported once the outcomes are durable.
      for (const outcome of outcomes) outcome();
      return true;
    } catch (error) {
      failure = error;
      await client.query("ROLLBACK").catch(() => {});
      throw error;
    } finally {
      client.removeListener?.("error", onClientError);
      const closeWith = broken ?? (failure instanceof Error ? failure : undefined);
      client.release(closeWith);
    }
  };

  const slot = async () => {
    let errorsInARow = 0;
    // Bounded by `closing`: each turn either handles an event or sleeps.
    while (!closing) {
      const seen = generation;
      let took = false;
      try {
        took = await processBatch();
        errorsInARow = 0;
      } catch (error) {
        errorsInARow++;
        report(
          new MappaWebhookError(
            "idempotency_store_failed",
            `@mappa-webhooks/postgres: the inbox worker could not take an event: ${errorMessage(error)}.${hintFor(error)} It tries again.`,
            { cause: error },
          ),
          { outcome: "worker" },
        );
        await sleep(Math.min(pollMs * 2 ** Math.min(errorsInARow, 5), 30_000), generation);
        continue;
      }
      if (!took) await sleep(pollMs, seen);
    }
  };

  // LISTEN on a connection of its own; on failure, polling carries on and it reconnects.
  let listener: TClient | undefined;
  const onNotification = (_message: PgNotification) => wakeAll();
  const listen = async (): Promise<void> => {
    if (closing) return;
    let client: TClient | undefined;
    try {
      client = await pool.connect();
      const held = client;
      const onListenerError = (error: Error) => {
        held.removeListener?.("notification", onNotification);
        held.removeListener?.("error", onListenerError);
        held.release(error);
        if (listener === held) listener = undefined;
        report(
          new MappaWebhookError(
            "idempotency_store_failed",
            `@mappa-webhooks/postgres: the worker's LISTEN connection failed: ${errorMessage(error)}. Polling every ${pollMs} ms until it reconnects.`,
            { cause: error },
          ),
          { outcome: "worker" },
        );
        if (!closing) setTimeout(() => void listen(), Math.max(pollMs, 1000)).unref?.();
      };
      client.on?.("error", onListenerError);
      client.on?.("notification", onNotification);
      await client.query(`LISTEN ${quoteIdentifier(t.channel)}`);
      listener = client;
      if (closing) await stopListening();
    } catch (error) {
      client?.release(error instanceof Error ? error : true);
      report(
        new MappaWebhookError(
          "idempotency_store_failed",
          `@mappa-webhooks/postgres: the worker could not LISTEN: ${errorMessage(error)}.${hintFor(error)} Polling every ${pollMs} ms meanwhile.`,
          { cause: error },
        ),
        { outcome: "worker" },
      );
      if (!closing) setTimeout(() => void listen(), Math.max(pollMs, 1000)).unref?.();
    }
  };
  const stopListening = async () => {
    const client = listener;
    listener = undefined;
    if (client === undefined) return;
    client.removeListener?.("notification", onNotification);
    // Closed rather than pooled: the connection still has the LISTEN.
    client.release(true);
  };

  const ready = options.listen === false ? Promise.resolve() : listen();
  const slots = Array.from({ length: concurrency }, () => slot());

  return {
    ready,
    stats,
    async close() {
      closing = true;
      wakeAll();
      await ready;
      await Promise.all(slots);
      await stopListening();
    },
  };
}
