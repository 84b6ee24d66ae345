import { randomUUID } from "node:crypto";
import {
  DEFAULT_LEASE_MS,
  type IdempotencyStore,
  type JobTrackingStore,
  MAPPA_EVENT_TYPES,
  type MappaEvent,
  type MappaHandlerMap,
  type MappaUnknownEvent,
} from "@mappa-webhooks/core";
import {
  checkDuration,
  checkPool,
  errorMessage,
  invalidOptions,
  isConnectionError,
  type PgClientLike,
  type PgPoolLike,
  type PoolClientOf,
  pgTimeoutMs,
  postgresError,
  sqlState,
  storableText,
  withTimeout,
} from "./pg.js";
import { type PostgresTablesOptions, resolveTables } from "./schema.js";
import { postgresJobTracking } from "./store.js";
import {
  beginEventTransaction,
  destroyTransaction,
  type EventTransaction,
  endTransaction,
  eventValues,
  handlerFor,
  rollbackTransaction,
  storeError,
  transactionSql,
} from "./transaction.js";

/**
 * Options of {@link createTransactionalHandlers}.
 *
 * @example
 * ```ts
 * const options: TransactionalHandlersOptions<pg.Pool> = { pool, on: { "report.completed": save } };
 * ```
 */
export interface TransactionalHandlersOptions<TPool extends PgPoolLike = PgPoolLike>
  extends PostgresTablesOptions {
  /** A `pg` Pool (or any pool with `query` and `connect`). Handlers get its clients. */
  pool: TPool;
  /**
   * Handlers by event type, narrowed as in the receiver. The second argument is the client of
   * the event's open transaction: write with it, and the writes commit together with the
   * event's done mark (or not at all). Never COMMIT or ROLLBACK it yourself.
   */
  on?: MappaHandlerMap<PoolClientOf<TPool>>;
  /** Called for event types this package does not know, in the same kind of transaction. */
  onUnknown?: (event: MappaUnknownEvent, client: PoolClientOf<TPool>) => unknown;
  /** Longest wait for a connection and the lock queries; then 503 and Mappa retries. Default 5000 ms. */
  timeoutMs?: number;
  /**
   * Longest run of one handler. Past it the delivery fails with `handler_timeout` (answered
   * 500, so Mappa retries): the transaction is rolled back, its connection (and the backend,
   * should it still run the handler's statement) ended, the lock freed for the retry, and the
   * failure recorded. Each statement of the transaction is also bounded, a little later, by
   * `statement_timeout` (should ending the backend fail). Default 25 000 ms, under Mappa's request timeout; at most 2^31 - 1.
   */
  handlerTimeoutMs?: number;
  /**
   * Record a failed attempt in the events table (`status = 'failed'`, `attempts`,
   * `last_error`), outside the rolled-back transaction, so it can be listed and replayed even
   * after Mappa stopped retrying. Default `true`.
   */
  recordFailures?: boolean;
}

/**
 * What the receiver's options need: spread `receiverOptions` into them.
 *
 * @example
 * ```ts
 * const { receiverOptions } = createTransactionalHandlers({ pool, on });
 * createMappaWebhooks({ secret, ...receiverOptions });
 * ```
 */
export interface TransactionalReceiverOptions {
  /** Claims an event by opening its transaction and taking its lock. */
  idempotency: Required<IdempotencyStore> & JobTrackingStore;
  on: MappaHandlerMap;
  onUnknown: (event: MappaUnknownEvent) => Promise<void>;
}

/**
 * Returned by {@link createTransactionalHandlers}.
 *
 * @example
 * ```ts
 * const tx: TransactionalHandlers = createTransactionalHandlers({ pool, on });
 * await tx.run(parseEvent(rawBody)); // "handled" or "duplicate"
 * ```
 */
export interface TransactionalHandlers {
  /** Spread into any adapter's options: `mappaWebhook({ secret, ...tx.receiverOptions })`. */
  receiverOptions: TransactionalReceiverOptions;
  /**
   * Runs one event's handler in its own transaction, outside a receiver: `"handled"` once it
   * committed, `"duplicate"` when the event was done already. Rejects with `event_in_flight`
   * while another transaction holds the event, or with the handler's error (rolled back).
   */
  run(event: MappaEvent): Promise<"handled" | "duplicate">;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_HANDLER_TIMEOUT_MS = 25_000;
const RECORD_TIMEOUT_MS = 10_000;
const ABORTED = "25P02";

/**
 * Transactional handlers: each delivery opens a transaction, locks the event (a concurrent
 * duplicate is answered 409 at once, never run in parallel), checks that it is not done yet
 * (a duplicate is answered 200 `duplicate`), runs your handler with the transaction's client,
 * writes the event's done mark and commits. Your writes and the done mark commit together, or
 * not at all: a throw or a crash rolls both back, and Mappa's retry runs the handler again on
 * clean state. Effects in this database happen exactly once.
 *
 * Works with every adapter the same way: spread `receiverOptions` into its options.
 *
 * @example
 * ```ts
 * import pg from "pg";
 * import { mappaWebhook } from "@mappa-webhooks/express";
 * import { createTransactionalHandlers, migrate } from "@mappa-webhooks/postgres";
 *
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * await migrate({ pool });
 * const tx = createTransactionalHandlers({
 *   pool,
 *   on: {
 *     "report.completed": async (event, client) => {
 *       await client.query("INSERT INTO reports (id, job_id) VALUES ($1, $2)", [
 *         event.data.reportId,
 *         event.data.jobId,
 *       ]);
 *     },
 *   },
 * });
 * app.post("/webhooks/mappa", mappaWebhook({ secret, ...tx.receiverOptions }));
 * ```
 */
export function createTransactionalHandlers<TPool extends PgPoolLike>(
  options: TransactionalHandlersOptions<TPool>,
): TransactionalHandlers {
  type TClient = PgClientLike;
  const api = "createTransactionalHandlers";
  if (options === null || typeof options !== "object")
    throw invalidOptions(api, "needs `{ pool }`.");
  checkPool(api, options.pool);
  checkDuration(api, "timeoutMs", options.timeoutMs);
  checkDuration(api, "handlerTimeoutMs", options.handlerTimeoutMs);
  const on = (options.on ?? {}) as MappaHandlerMap<TClient>;
  const onUnknown = options.onUnknown as
    | ((event: MappaUnknownEvent, client: TClient) => unknown)
    | undefined;
  for (const [type, handler] of Object.entries(on)) {
    if (typeof handler !== "function") {
      throw invalidOptions(api, `the handler for "${type}" in \`on\` is not a function.`);
    }
  }
  if (options.onUnknown !== undefined && typeof options.onUnknown !== "function") {
    throw invalidOptions(api, "`onUnknown` must be a function.");
  }
  const pool = options.pool as PgPoolLike;
  const t = resolveTables(options);
  const sql = transactionSql(t);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const handlerTimeoutMs = pgTimeoutMs(options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS);
  const recordFailures = options.recordFailures ?? true;
  /** Transactions opened by `claim`, waiting for the handler wrapper, by event key. */
  const open = new Map<string, EventTransaction<TClient> & { token: string }>();

  const forget = (tx: EventTransaction<TClient>) => {
    const held = open.get(tx.key);
    if (held === tx) open.delete(tx.key);
  };

  const recordFailure = async (event: MappaEvent, key: string, error: unknown) => {
    if (!recordFailures) return;
    await withTimeout(
      pool.query(sql.recordFailure, [
        ...eventValues(event, key),
        storableText(errorMessage(error)),
      ]),
      RECORD_TIMEOUT_MS,
      () => new Error("no answer"),
    ).catch(() => {});
  };

  /** The error to answer with when a statement of the event's own transaction failed. */
  const transactionFailure = (key: string, error: unknown): unknown => {
    if (sqlState(error) === ABORTED) {
      return postgresError(
        "handler_failed",
        `the handler of event ${key} returned normally, but a statement of its transaction had failed, which aborted the transaction (SQLSTATE 25P02); everything is rolled back and Mappa retries. Let database errors propagate out of the handler, or use a SAVEPOINT around statements that may fail.`,
        { cause: error },
      );
    }
    if (isConnectionError(error)) {
      return storeError(
        `the database connection of event ${key} failed before its done mark committed: ${errorMessage(error)}. Everything is rolled back.`,
        error,
      );
    }
    return error;
  };

  type Settled = { kind: "ok" } | { kind: "threw"; error: unknown } | { kind: "timeout" };

  /** Runs the handler, at most `handlerTimeoutMs`. */
  const runHandler = async (event: MappaEvent, client: TClient): Promise<Settled> => {
    const handler = handlerFor(on, onUnknown, event);
    if (handler === undefined) return { kind: "ok" };
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        (async (): Promise<Settled> => {
          await handler(event, client);
          return { kind: "ok" };
        })().catch((error: unknown): Settled => ({ kind: "threw", error })),
        new Promise<Settled>((resolve) => {
          timer = setTimeout(() => resolve({ kind: "timeout" }), handlerTimeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };

  /** Runs the handler in `tx`, marks the event done and commits; rolls back on any failure. */
  const execute = async (event: MappaEvent, tx: EventTransaction<TClient>, key: string) => {
    tx.state = "running";
    const settled = await runHandler(event, tx.client);
    if (settled.kind === "timeout") {
      const error = postgresError(
        "handler_timeout",
        `the handler of event ${key} did not settle within handlerTimeoutMs (${handlerTimeoutMs} ms); its transaction was rolled back and its connection closed, and Mappa retries the delivery. Make the handler finish sooner, or raise \`handlerTimeoutMs\` (keep it under Mappa's request timeout).`,
      );
      forget(tx);
      await destroyTransaction(pool, tx, error);
      await recordFailure(event, key, error);
      throw error;
    }
    if (settled.kind === "threw") {
      forget(tx);
      await rollbackTransaction(tx);
      await recordFailure(event, key, settled.error);
      throw settled.error;
    }
    try {
      tx.state = "committing";
      await tx.client.query(sql.markDone, eventValues(event, key));
      await tx.client.query("COMMIT");
      tx.state = "committed";
      forget(tx);
      endTransaction(tx);
    } catch (error) {
      forget(tx);
      await rollbackTransaction(tx);
      const failure = transactionFailure(key, error);
      await recordFailure(event, key, failure);
      throw failure;
    }
  };

  const run = async (event: MappaEvent): Promise<"handled" | "duplicate"> => {
    const claimed = event.idempotencyKey === undefined ? undefined : open.get(event.idempotencyKey);
    if (claimed !== undefined && claimed.state === "open") {
      await execute(event, claimed, claimed.key);
      return "handled";
    }
    // Not claimed through the receiver's store (e.g. `idempotency: false`, or no key).
    const key = event.idempotencyKey ?? `~nokey:${randomUUID()}`;
    const begun = await beginEventTransaction(
      pool,
      t,
      event.idempotencyKey,
      DEFAULT_LEASE_MS,
      timeoutMs,
      handlerTimeoutMs,
    );
    if (begun.status === "completed") return "duplicate";
    if (begun.status === "in_flight") {
      throw postgresError(
        "event_in_flight",
        `event ${key} is being handled by another transaction right now; retry later.`,
      );
    }
    await execute(event, begun.tx, key);
    return "handled";
  };

  const wrapper = async (event: MappaEvent) => {
    await run(event);
  };
  const handlers: MappaHandlerMap = {};
  for (const type of MAPPA_EVENT_TYPES) handlers[type] = wrapper;

  // Tracks jobs too, so createMappaRecovery accepts these receiver options' store.
  const idempotency: Required<IdempotencyStore> & JobTrackingStore = {
    ...postgresJobTracking(pool, t.trackedJobs, timeoutMs),
    async claim(key, { leaseMs }) {
      const begun = await beginEventTransaction(pool, t, key, leaseMs, timeoutMs, handlerTimeoutMs);
      if (begun.status !== "claimed") return begun;
      const token = randomUUID();
      open.set(key, Object.assign(begun.tx, { token }));
      return { status: "claimed", token };
    },
    async complete(key, token) {
      const tx = open.get(key);
      if (tx === undefined || tx.token !== token || tx.state !== "open") return;
      // The handlers ran without this package's wrapper: record the done mark now.
      forget(tx);
      try {
        await tx.client.query(sql.markDone, [key, null, "", "null"]);
        await tx.client.query("COMMIT");
        tx.state = "committed";
        endTransaction(tx);
      } catch (error) {
        await rollbackTransaction(tx);
        throw transactionFailure(key, error);
      }
    },
    async release(key, token) {
      const tx = open.get(key);
      if (tx === undefined || tx.token !== token) return;
      forget(tx);
      await rollbackTransaction(tx);
    },
    async renew(key, token, { leaseMs }) {
      const tx = open.get(key);
      if (tx === undefined || tx.token !== token) return false;
      if (tx.state === "committing" || tx.state === "committed") return true;
      if (tx.state !== "open" && tx.state !== "running") return false;
      try {
        const idleMs = pgTimeoutMs(leaseMs);
        await tx.client.query(`SET LOCAL idle_in_transaction_session_timeout = ${idleMs}`);
        return true;
      } catch {
        return false;
      }
    },
  };

  return { receiverOptions: { idempotency, on: handlers, onUnknown: wrapper }, run };
}
