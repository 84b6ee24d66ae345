import { createHash, randomUUID } from "node:crypto";
import {
  DEFAULT_LEASE_MS,
  type IdempotencyStore,
  type JobTrackingStore,
  MAPPA_EVENT_TYPES,
  type MappaEvent,
  type MappaHandlerMap,
  type MappaUnknownEvent,
  MappaWebhookError,
} from "@mappa-webhooks/core";
import {
  checkPool,
  checkPositive,
  errorMessage,
  invalidOptions,
  MAX_KEY_LENGTH,
  type MysqlConnectionLike,
  type MysqlPoolLike,
  type PoolConnectionOf,
  rowsOf,
  storeFailed,
  withTimeout,
} from "./mysql.js";
import { type MysqlTablesOptions, type ResolvedTables, resolveTables } from "./schema.js";
import { mysqlJobTracking } from "./store.js";

/**
 * Options of {@link createTransactionalHandlers}.
 *
 * @example
 * ```ts
 * const options: TransactionalHandlersOptions<Pool> = { pool, on: { "report.completed": save } };
 * ```
 */
export interface TransactionalHandlersOptions<TPool extends MysqlPoolLike = MysqlPoolLike>
  extends MysqlTablesOptions {
  /** A mysql2/promise Pool. Handlers get its connections. */
  pool: TPool;
  /**
   * Handlers by event type, narrowed as in the receiver. The second argument is the
   * connection of the event's open transaction: write with it, and the writes commit together
   * with the event's done mark (or not at all). Never COMMIT or ROLLBACK it yourself.
   */
  on?: MappaHandlerMap<PoolConnectionOf<TPool>>;
  /** Called for event types this package does not know, in the same kind of transaction. */
  onUnknown?: (event: MappaUnknownEvent, connection: PoolConnectionOf<TPool>) => unknown;
  /** Longest wait for a connection and the lock queries; then 503 and Mappa retries. Default 5000 ms. */
  timeoutMs?: number;
  /** Record a failed attempt (`status = 'failed'`, `attempts`, `last_error`) after the rollback. Default `true`. */
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
   * committed, `"duplicate"` when it was done already. Rejects with `event_in_flight` while
   * another transaction holds the event, or with the handler's error (rolled back).
   */
  run(event: MappaEvent): Promise<"handled" | "duplicate">;
}

const DEFAULT_TIMEOUT_MS = 5000;

interface EventTransaction {
  connection: MysqlConnectionLike;
  key: string;
  lock: string | undefined;
  token: string;
  state: "open" | "running" | "committing" | "committed" | "rolled_back";
  released: boolean;
}

function transactionSql(t: ResolvedTables) {
  return {
    status: `SELECT status FROM ${t.events} WHERE event_key = ? FOR UPDATE`,
    markDone: `INSERT INTO ${t.events}
        (event_key, event_id, type, payload, status, attempts, received_at, done_at, updated_at)
      VALUES (?, ?, ?, ?, 'done', 1, NOW(3), NOW(3), NOW(3))
      ON DUPLICATE KEY UPDATE status = 'done', attempts = attempts + 1, last_error = NULL,
        done_at = NOW(3), updated_at = NOW(3)`,
    recordFailure: `INSERT INTO ${t.events}
        (event_key, event_id, type, payload, status, attempts, last_error, updated_at)
      VALUES (?, ?, ?, ?, 'failed', 1, ?, NOW(3))
      ON DUPLICATE KEY UPDATE attempts = attempts + 1, last_error = VALUES(last_error),
        updated_at = NOW(3)`,
  };
}

function eventValues(event: MappaEvent | undefined, key: string): unknown[] {
  if (event === undefined) return [key, null, "", "null"];
  return [key, event.id ?? null, event.type, JSON.stringify(event.raw)];
}

/** A named lock per table and key, within MySQL's 64 characters. */
function lockName(t: ResolvedTables, key: string): string {
  return `mappa:${createHash("sha256").update(`${t.events}\u0000${key}`).digest("hex").slice(0, 48)}`;
}

/** Seconds for `wait_timeout`: the server closes the session (rolling back, freeing the lock) when idle longer. */
const idleSeconds = (leaseMs: number) =>
  Math.max(1, Math.min(31_536_000, Math.ceil(leaseMs / 1000)));

/**
 * Transactional handlers on MySQL or MariaDB: each delivery takes a connection, a named lock on
 * the event (`GET_LOCK(name, 0)`: a concurrent duplicate gets 409 at once, it never runs in
 * parallel), opens a READ COMMITTED transaction, reads the event's row `FOR UPDATE` (`done` →
 * 200 `duplicate`), runs your handler with the connection, writes the done mark and commits.
 * Your writes and the done mark commit together, or not at all: a throw or a crash rolls both
 * back (the server does when the connection drops), and Mappa's retry runs the handler again
 * on clean state. Effects in this database happen exactly once.
 *
 * @example
 * ```ts
 * import mysql from "mysql2/promise";
 * import { mappaWebhook } from "@mappa-webhooks/express";
 * import { createTransactionalHandlers, migrate } from "@mappa-webhooks/mysql";
 *
 * const pool = mysql.createPool(process.env.MYSQL_URL!);
 * await migrate({ pool });
 * const tx = createTransactionalHandlers({
 *   pool,
 *   on: {
 *     "report.completed": async (event, connection) => {
 *       await connection.query("INSERT INTO reports (id, job_id) VALUES (?, ?)", [
 *         event.data.reportId,
 *         event.data.jobId,
 *       ]);
 *     },
 *   },
 * });
 * app.post("/webhooks/mappa", mappaWebhook({ secret, ...tx.receiverOptions }));
 * ```
 */
export function createTransactionalHandlers<TPool extends MysqlPoolLike>(
  options: TransactionalHandlersOptions<TPool>,
): TransactionalHandlers {
  const api = "createTransactionalHandlers";
  if (options === null || typeof options !== "object")
    throw invalidOptions(api, "needs `{ pool }`.");
  checkPool(api, options.pool);
  checkPositive(api, "timeoutMs", options.timeoutMs);
  type Handler = (event: MappaEvent, connection: MysqlConnectionLike) => unknown;
  const on = (options.on ?? {}) as Record<string, Handler | undefined>;
  for (const [type, handler] of Object.entries(on)) {
    if (typeof handler !== "function") {
      throw invalidOptions(api, `the handler for "${type}" in \`on\` is not a function.`);
    }
  }
  if (options.onUnknown !== undefined && typeof options.onUnknown !== "function") {
    throw invalidOptions(api, "`onUnknown` must be a function.");
  }
  if (options.recordFailures !== undefined && typeof options.recordFailures !== "boolean") {
    throw invalidOptions(api, "`recordFailures` must be true or false.");
  }
  const onUnknown = options.onUnknown as Handler | undefined;
  const pool = options.pool as MysqlPoolLike;
  const t = resolveTables(options);
  const sql = transactionSql(t);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const recordFailures = options.recordFailures ?? true;
  const open = new Map<string, EventTransaction>();

  const within = <T>(promise: Promise<T>, what: string) =>
    withTimeout(promise, timeoutMs, () => storeFailed(`${what} took longer than ${timeoutMs} ms.`));

  /** Ends the session's part: the lock freed, the idle limit restored, the connection back. */
  const finish = async (tx: EventTransaction, broken?: unknown) => {
    if (tx.released) return;
    tx.released = true;
    if (open.get(tx.key) === tx) open.delete(tx.key);
    if (broken === undefined) {
      try {
        if (tx.lock !== undefined) await tx.connection.query("DO RELEASE_LOCK(?)", [tx.lock]);
        await tx.connection.query("SET SESSION wait_timeout = @@GLOBAL.wait_timeout");
        tx.connection.release();
        return;
      } catch {
        // Fall through: a connection that cannot even do that is closed.
      }
    }
    if (typeof tx.connection.destroy === "function") tx.connection.destroy();
    else tx.connection.release();
  };

  const rollback = async (tx: EventTransaction) => {
    tx.state = "rolled_back";
    let failure: unknown;
    await tx.connection.query("ROLLBACK").catch((error: unknown) => {
      failure = error;
    });
    await finish(tx, failure);
  };

  const begin = async (
    key: string | undefined,
    leaseMs: number,
  ): Promise<
    { status: "claimed"; tx: EventTransaction } | { status: "in_flight" | "completed" }
  > => {
    if (key !== undefined && key.length > MAX_KEY_LENGTH) {
      throw storeFailed(`event keys longer than ${MAX_KEY_LENGTH} characters are not stored.`);
    }
    let connection: MysqlConnectionLike;
    try {
      connection = await within(
        pool.getConnection(),
        "getting a connection (is the pool exhausted?)",
      );
    } catch (error) {
      if (error instanceof MappaWebhookError) throw error;
      throw storeFailed(`could not connect: ${errorMessage(error)}.`, error);
    }
    const tx: EventTransaction = {
      connection,
      key: key ?? `~nokey:${randomUUID()}`,
      lock: undefined,
      token: randomUUID(),
      state: "open",
      released: false,
    };
    try {
      await within(
        connection.query(`SET SESSION wait_timeout = ${idleSeconds(leaseMs)}`),
        "the session setup",
      );
      if (key !== undefined) {
        const name = lockName(t, key);
        const [row] = rowsOf<{ locked: number | null }>(
          await within(
            connection.query("SELECT GET_LOCK(?, 0) AS locked", [name]),
            "the event's lock",
          ),
        );
        if (Number(row?.locked) !== 1) {
          await finish(tx);
          return { status: "in_flight" };
        }
        tx.lock = name;
      }
      await within(
        connection.query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
        "starting the transaction",
      );
      await within(connection.query("START TRANSACTION"), "starting the transaction");
      if (key !== undefined) {
        const [row] = rowsOf<{ status: string }>(
          await within(connection.query(sql.status, [key]), "reading the event's row"),
        );
        if (row?.status === "done") {
          await rollback(tx);
          return { status: "completed" };
        }
      }
      return { status: "claimed", tx };
    } catch (error) {
      await finish(tx, error);
      if (error instanceof MappaWebhookError) throw error;
      throw storeFailed(
        `could not open the transaction of event ${key ?? "(no key)"}: ${errorMessage(error)}.`,
        error,
      );
    }
  };

  const recordFailure = async (event: MappaEvent, key: string, error: unknown) => {
    if (!recordFailures) return;
    await pool
      .query(sql.recordFailure, [...eventValues(event, key), errorMessage(error).slice(0, 2000)])
      .catch(() => {});
  };

  const execute = async (event: MappaEvent, tx: EventTransaction) => {
    tx.state = "running";
    try {
      const handler = event.known ? on[event.type] : onUnknown;
      if (handler !== undefined) await handler(event, tx.connection);
      tx.state = "committing";
      await tx.connection.query(sql.markDone, eventValues(event, tx.key));
      await tx.connection.query("COMMIT");
      tx.state = "committed";
      await finish(tx);
    } catch (error) {
      await rollback(tx);
      await recordFailure(event, tx.key, error);
      throw error;
    }
  };

  const run = async (event: MappaEvent): Promise<"handled" | "duplicate"> => {
    const claimed = event.idempotencyKey === undefined ? undefined : open.get(event.idempotencyKey);
    if (claimed !== undefined && claimed.state === "open") {
      await execute(event, claimed);
      return "handled";
    }
    const begun = await begin(event.idempotencyKey, DEFAULT_LEASE_MS);
    if (begun.status === "completed") return "duplicate";
    if (!("tx" in begun)) {
      throw new MappaWebhookError(
        "event_in_flight",
        `@mappa-webhooks/mysql: event ${event.idempotencyKey} is being handled by another transaction right now; retry later.`,
      );
    }
    await execute(event, begun.tx);
    return "handled";
  };

  const wrapper = async (event: MappaEvent) => {
    await run(event);
  };
  const handlers: MappaHandlerMap = {};
  for (const type of MAPPA_EVENT_TYPES) (handlers as Record<string, unknown>)[type] = wrapper;

  // Tracks jobs too, so createMappaRecovery accepts these receiver options' store.
  const idempotency: Required<IdempotencyStore> & JobTrackingStore = {
    ...mysqlJobTracking(pool, t.trackedJobs, timeoutMs),
    async claim(key, { leaseMs }) {
      const begun = await begin(key, leaseMs);
      if (!("tx" in begun)) return { status: begun.status };
      open.set(key, begun.tx);
      return { status: "claimed", token: begun.tx.token };
    },
    async complete(key, token) {
      const tx = open.get(key);
      if (tx === undefined || tx.token !== token || tx.state !== "open") return;
      // The handlers ran without this package's wrapper: record the done mark now.
      try {
        await tx.connection.query(sql.markDone, eventValues(undefined, key));
        await tx.connection.query("COMMIT");
        tx.state = "committed";
        await finish(tx);
      } catch (error) {
        await rollback(tx);
        throw storeFailed(`could not commit event ${key}: ${errorMessage(error)}.`, error);
      }
    },
    async release(key, token) {
      const tx = open.get(key);
      if (tx === undefined || tx.token !== token) return;
      await rollback(tx);
    },
    async renew(key, token, { leaseMs }) {
      const tx = open.get(key);
      if (tx === undefined || tx.token !== token) return false;
      if (tx.state === "committing" || tx.state === "committed") return true;
      if (tx.state !== "open" && tx.state !== "running") return false;
      try {
        await tx.connection.query(`SET SESSION wait_timeout = ${idleSeconds(leaseMs)}`);
        return true;
      } catch {
        return false;
      }
    },
  };

  return { receiverOptions: { idempotency, on: handlers, onUnknown: wrapper }, run };
}
