import {
  type MappaEvent,
  type MappaHandlerMap,
  type MappaUnknownEvent,
  MappaWebhookError,
} from "@mappa-webhooks/core";
import {
  connectWithin,
  errorMessage,
  guardClient,
  hintFor,
  type PgClientLike,
  type PgPoolLike,
  pgTimeoutMs,
  postgresError,
  sqlState,
  statementTimeoutFor,
  withTimeout,
} from "./pg.js";
import type { ResolvedTables } from "./schema.js";

/** A handler of a transactional map or an inbox worker: gets the transaction's client. */
export type TransactionalHandler<TClient> = (event: MappaEvent, client: TClient) => unknown;

/** Picks the handler for an event from a typed map and an `onUnknown`. */
export function handlerFor<TClient>(
  on: MappaHandlerMap<TClient>,
  onUnknown: ((event: MappaUnknownEvent, client: TClient) => unknown) | undefined,
  event: MappaEvent,
): TransactionalHandler<TClient> | undefined {
  if (event.known) return on[event.type] as TransactionalHandler<TClient> | undefined;
  return onUnknown as TransactionalHandler<TClient> | undefined;
}

/** One open transaction that holds an event's lock. */
export interface EventTransaction<TClient extends PgClientLike> {
  client: TClient;
  key: string;
  state: "open" | "running" | "committing" | "committed" | "rolled_back";
  /** Set when the connection failed while we held it. */
  broken: Error | undefined;
  /** The connection went back to the pool. */
  released: boolean;
  onError: (error: Error) => void;
}

export type BeginResult<TClient extends PgClientLike> =
  | { status: "claimed"; tx: EventTransaction<TClient> }
  | { status: "in_flight" }
  | { status: "completed" };

export function storeError(message: string, cause?: unknown): MappaWebhookError {
  return postgresError(
    "idempotency_store_failed",
    `${message}${cause === undefined ? "" : hintFor(cause)} Answered 503 so Mappa retries the delivery.`,
    cause === undefined ? {} : { cause },
  );
}

/** Lock not available (`FOR UPDATE NOWAIT` on a row an inbox worker holds). */
const LOCK_NOT_AVAILABLE = "55P03";

/** Database work of transactional handlers, shared by the receiver and `run`. */
export function transactionSql(t: ResolvedTables) {
  return {
    lock: "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked",
    // The row lock also keeps an inbox worker (FOR UPDATE SKIP LOCKED) off this event.
    status: `SELECT status FROM ${t.events} WHERE key = $1 FOR UPDATE NOWAIT`,
    markDone: `INSERT INTO ${t.events} AS e
        (key, event_id, type, payload, status, attempts, run_at, received_at, done_at, updated_at)
      VALUES ($1, $2, $3, $4::json, 'done', 1, now(), now(), now(), now())
      ON CONFLICT (key) DO UPDATE
         SET status = 'done', attempts = e.attempts + 1, last_error = NULL,
             done_at = now(), updated_at = now()`,
    // Outside the rolled-back transaction: the attempt is visible (and replayable) even if
    // Mappa stops retrying. A done or pending row keeps its status.
    recordFailure: `INSERT INTO ${t.events} AS e
        (key, event_id, type, payload, status, attempts, last_error, updated_at)
      VALUES ($1, $2, $3, $4::json, 'failed', 1, $5, now())
      ON CONFLICT (key) DO UPDATE
         SET attempts = e.attempts + 1, last_error = excluded.last_error, updated_at = now()`,
  };
}

/** The lock name of an event: one per events table and key. */
export function lockNameFor(t: ResolvedTables, key: string): string {
  return `${t.events}:${key}`;
}

/**
 * Opens a transaction for an event: BEGIN (read committed, so each statement sees the latest
 * commits), an advisory lock on the key (a concurrent duplicate gets `in_flight` at once), then
 * the event's row, locked: `done` means `completed`. The session ends itself after `leaseMs`
 * idle inside the transaction, so a frozen process never holds the event for ever, and each
 * statement is bounded by `statementTimeoutMs` (a handler stuck in the database).
 */
export async function beginEventTransaction<TClient extends PgClientLike>(
  pool: PgPoolLike<TClient>,
  t: ResolvedTables,
  key: string | undefined,
  leaseMs: number,
  timeoutMs: number,
  statementTimeoutMs: number,
): Promise<BeginResult<TClient>> {
  const sql = transactionSql(t);
  let client: TClient;
  try {
    client = await connectWithin(pool, timeoutMs, () =>
      storeError(`no database connection within ${timeoutMs} ms (is the pool exhausted?).`),
    );
  } catch (error) {
    if (error instanceof MappaWebhookError) throw error;
    throw storeError(`could not connect: ${errorMessage(error)}.`, error);
  }
  const tx: EventTransaction<TClient> = {
    client,
    key: key ?? "",
    state: "open",
    broken: undefined,
    released: false,
    onError: (error) => {
      tx.broken = error;
    },
  };
  guardClient(client);
  client.on?.("error", tx.onError);
  const giveBack = async () => {
    await client.query("ROLLBACK").catch(() => {});
    endTransaction(tx);
  };
  try {
    // Both within Postgres' range whatever the receiver's `leaseMs` (2^31 - 1 ms at most).
    const idleMs = pgTimeoutMs(leaseMs);
    await client.query(
      `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL idle_in_transaction_session_timeout = ${idleMs}; SET LOCAL statement_timeout = ${statementTimeoutFor(statementTimeoutMs)}`,
    );
    if (key === undefined) return { status: "claimed", tx };
    const lock = await client.query(sql.lock, [lockNameFor(t, key)]);
    if ((lock.rows[0] as { locked: boolean }).locked !== true) {
      await giveBack();
      return { status: "in_flight" };
    }
    let status: string | undefined;
    try {
      const row = await client.query(sql.status, [key]);
      status = (row.rows[0] as { status: string } | undefined)?.status;
    } catch (error) {
      if (sqlState(error) === LOCK_NOT_AVAILABLE) {
        await giveBack();
        return { status: "in_flight" };
      }
      throw error;
    }
    if (status === "done") {
      await giveBack();
      return { status: "completed" };
    }
    return { status: "claimed", tx };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    endTransaction(tx, error);
    throw storeError(
      `could not open the transaction of event ${key ?? "(no key)"}: ${errorMessage(error)}.`,
      error,
    );
  }
}

/** Gives the connection back (closed instead if it failed). */
export function endTransaction<TClient extends PgClientLike>(
  tx: EventTransaction<TClient>,
  error?: unknown,
): void {
  if (tx.released) return;
  tx.released = true;
  tx.client.removeListener?.("error", tx.onError);
  const failure = tx.broken ?? (error instanceof Error ? error : undefined);
  tx.client.release(failure);
}

/**
 * Ends a transaction whose handler may still be running: the backend is terminated (a
 * statement such as `pg_sleep` would otherwise keep its locks), the connection closed.
 */
export async function destroyTransaction<TClient extends PgClientLike>(
  pool: PgPoolLike,
  tx: EventTransaction<TClient>,
  reason: Error,
): Promise<void> {
  if (tx.released) return;
  tx.state = "rolled_back";
  const pid = (tx.client as { processID?: unknown }).processID;
  if (typeof pid === "number") {
    await withTimeout(
      pool.query("SELECT pg_terminate_backend($1)", [pid]),
      10_000,
      () => new Error("no answer"),
    ).catch(() => {});
  }
  endTransaction(tx, reason);
}

/** Rolls back and gives the connection back; never throws. */
export async function rollbackTransaction<TClient extends PgClientLike>(
  tx: EventTransaction<TClient>,
): Promise<void> {
  if (tx.released) return;
  let failure: unknown;
  await tx.client.query("ROLLBACK").catch((error: unknown) => {
    failure = error;
  });
  tx.state = "rolled_back";
  endTransaction(tx, failure);
}

/** The values of `markDone` / `recordFailure` for an event. */
export function eventValues(event: MappaEvent, key: string): unknown[] {
  return [key, event.id ?? null, event.type, JSON.stringify(event.raw)];
}
