import { randomUUID } from "node:crypto";
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
  errorMessage,
  retryBusy,
  type SqliteConnection,
  type SqliteRunResult,
  type SqliteValue,
} from "./driver.js";
import {
  checkDatabaseOptions,
  DEFAULT_TIMEOUT_MS,
  invalidOptions,
  lazyConnection,
  type SqliteDatabaseOptions,
  storeFailed,
} from "./open.js";
import { type ResolvedTables, resolveTables } from "./schema.js";
import { rollback, sqliteJobTracking } from "./store.js";

/**
 * The open transaction of one event, as its handler gets it: write with it, and the writes
 * commit together with the event's done mark (or not at all). It refuses every call once the
 * transaction ended, so a write a handler left running cannot land in another event's.
 *
 * @example
 * ```ts
 * on: {
 *   "report.completed": (event, tx: SqliteTransaction) => {
 *     tx.run("INSERT INTO reports (id, job_id) VALUES (?, ?)", [event.data.reportId, event.data.jobId]);
 *   },
 * }
 * ```
 */
export interface SqliteTransaction<TDatabase = unknown> {
  /** Runs a write statement in the event's transaction. */
  run(sql: string, params?: readonly SqliteValue[]): SqliteRunResult;
  /** The first row, or `undefined`. */
  get<TRow = Record<string, unknown>>(
    sql: string,
    params?: readonly SqliteValue[],
  ): TRow | undefined;
  /** Every row. */
  all<TRow = Record<string, unknown>>(sql: string, params?: readonly SqliteValue[]): TRow[];
  /** Runs statements without parameters (never `COMMIT`, `ROLLBACK` or `BEGIN`). */
  exec(sql: string): void;
  /**
   * The driver's own database object (for a query builder), inside the same transaction while
   * the handler runs. Use it only until the handler returns.
   */
  readonly database: TDatabase;
  /** The event's idempotency key. */
  readonly key: string;
}

/**
 * Options of {@link createTransactionalHandlers}.
 *
 * @example
 * ```ts
 * const options: TransactionalHandlersOptions = { database: "./data/app.db", on: { "report.completed": save } };
 * ```
 */
export interface TransactionalHandlersOptions<TDatabase = unknown> extends SqliteDatabaseOptions {
  /**
   * Handlers by event type, narrowed as in the receiver. The second argument is the event's
   * open transaction: write with it, and the writes commit together with the event's done
   * mark (or not at all).
   */
  on?: MappaHandlerMap<SqliteTransaction<TDatabase>>;
  /** Called for event types this package does not know, in the same kind of transaction. */
  onUnknown?: (event: MappaUnknownEvent, tx: SqliteTransaction<TDatabase>) => unknown;
  /**
   * Record a failed attempt in the events table (`status = 'failed'`, `attempts`,
   * `last_error`), after the rollback. Default `true`.
   */
  recordFailures?: boolean;
}

/**
 * What the receiver's options need: spread `receiverOptions` into them.
 *
 * @example
 * ```ts
 * const { receiverOptions } = createTransactionalHandlers({ database: "./data/app.db", on });
 * createMappaWebhooks({ secret, ...receiverOptions });
 * ```
 */
export interface TransactionalReceiverOptions {
  /** Claims an event by opening its transaction. */
  idempotency: Required<IdempotencyStore> & JobTrackingStore;
  on: MappaHandlerMap;
  onUnknown: (event: MappaUnknownEvent) => Promise<void>;
}

/**
 * Returned by {@link createTransactionalHandlers}.
 *
 * @example
 * ```ts
 * const tx: TransactionalHandlers = createTransactionalHandlers({ database: "./data/app.db", on });
 * await tx.run(parseEvent(rawBody)); // "handled" or "duplicate"
 * ```
 */
export interface TransactionalHandlers {
  /** Spread into any adapter's options: `mappaWebhook({ secret, ...tx.receiverOptions })`. */
  receiverOptions: TransactionalReceiverOptions;
  /**
   * Runs one event's handler in its own transaction, outside a receiver: `"handled"` once it
   * committed, `"duplicate"` when the event was done already. Rejects with `event_in_flight`
   * while this process handles the same event, or with the handler's error (rolled back).
   */
  run(event: MappaEvent): Promise<"handled" | "duplicate">;
  /** Resolves with the open connection once the file is open and the tables exist. */
  ready(): Promise<SqliteConnection>;
  /** Closes the connection (only one opened from a file name). */
  close(): Promise<void>;
}

type TxState = "open" | "running" | "committing" | "failing" | "committed" | "rolled_back";

interface EventTransaction {
  key: string;
  token: string;
  state: TxState;
  connection: SqliteConnection;
  /** Hands the connection to the next transaction of this process. */
  unlock: () => void;
  /** Rolls back a transaction nobody renewed for a lease (a claim whose handler never came). */
  watchdog: ReturnType<typeof setTimeout> | undefined;
}

/** Transactions on one connection take turns: a queue with a bounded wait. */
function createTurns() {
  let tail: Promise<void> = Promise.resolve();
  return (timeoutMs: number): Promise<() => void> => {
    let unlock!: () => void;
    const mine = new Promise<void>((resolve) => {
      unlock = resolve;
    });
    const previous = tail;
    tail = previous.then(() => mine);
    let timer: ReturnType<typeof setTimeout> | undefined;
    return new Promise<() => void>((resolve, reject) => {
      let gaveUp = false;
      timer = setTimeout(() => {
        gaveUp = true;
        reject(
          new Error(`still waiting for this process's other transactions after ${timeoutMs} ms`),
        );
      }, timeoutMs);
      previous.then(() => {
        clearTimeout(timer);
        // Gave up meanwhile: pass the turn on at once.
        if (gaveUp) unlock();
        else resolve(once(unlock));
      });
    });
  };
}

function once(fn: () => void): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    fn();
  };
}

function transactionSql(t: ResolvedTables) {
  return {
    status: `SELECT status FROM ${t.events} WHERE key = ?`,
    markDone: `INSERT INTO ${t.events}
        (key, event_id, type, payload, status, attempts, received_at, done_at, updated_at)
      VALUES (?, ?, ?, ?, 'done', 1, ?, ?, ?)
      ON CONFLICT (key) DO UPDATE
         SET status = 'done', attempts = attempts + 1, last_error = NULL,
             done_at = excluded.done_at, updated_at = excluded.updated_at`,
    recordFailure: `INSERT INTO ${t.events}
        (key, event_id, type, payload, status, attempts, last_error, received_at, updated_at)
      VALUES (?, ?, ?, ?, 'failed', 1, ?, ?, ?)
      ON CONFLICT (key) DO UPDATE
         SET attempts = attempts + 1, last_error = excluded.last_error,
             updated_at = excluded.updated_at`,
  };
}

function eventValues(event: MappaEvent | undefined, key: string): SqliteValue[] {
  if (event === undefined) return [key, null, "", "null"];
  return [key, event.id ?? null, event.type, JSON.stringify(event.raw)];
}

/**
 * Transactional handlers on SQLite: each delivery takes this process's turn on the
 * connection, opens `BEGIN IMMEDIATE` (the database's write lock, retried without blocking
 * while another process holds it), checks that the event is not done yet (a duplicate is
 * answered 200 `duplicate`), runs your handler with the transaction, writes the event's done
 * mark and commits. Your writes and the done mark commit together, or not at all: a throw or
 * a crash (even `kill -9`) rolls both back, and Mappa's retry runs the handler again on clean
 * state. Effects in this database happen exactly once, across every process on the file.
 *
 * SQLite has one writer at a time: while a handler runs, other deliveries wait for it. Keep
 * handlers short (milliseconds); `timeoutMs` bounds every wait (then 503, Mappa retries).
 *
 * @example
 * ```ts
 * import { mappaWebhook } from "@mappa-webhooks/express";
 * import { createTransactionalHandlers } from "@mappa-webhooks/sqlite";
 *
 * const tx = createTransactionalHandlers({
 *   database: "./data/app.db",
 *   on: {
 *     "report.completed": (event, tx) => {
 *       tx.run("INSERT INTO reports (id, job_id) VALUES (?, ?)", [event.data.reportId, event.data.jobId]);
 *     },
 *   },
 * });
 * app.post("/webhooks/mappa", mappaWebhook({ secret, ...tx.receiverOptions }));
 * ```
 */
export function createTransactionalHandlers<TDatabase = unknown>(
  options: TransactionalHandlersOptions<TDatabase>,
): TransactionalHandlers {
  const api = "createTransactionalHandlers";
  checkDatabaseOptions(api, options);
  type Tx = SqliteTransaction<TDatabase>;
  const on = (options.on ?? {}) as MappaHandlerMap<Tx>;
  if (on === null || typeof on !== "object")
    throw invalidOptions(api, "`on` must be an object of handlers.");
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
  const onUnknown = options.onUnknown;
  const t = resolveTables(options);
  const sql = transactionSql(t);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const recordFailures = options.recordFailures ?? true;
  const connect = lazyConnection(options);
  const ownsConnection = typeof options.database === "string";
  const takeTurn = createTurns();
  /** Keys this process is claiming or handling right now: a copy gets 409 at once. */
  const busy = new Set<string>();
  /** Transactions opened by `claim`, waiting for the handler wrapper, by key. */
  const open = new Map<string, EventTransaction>();

  const end = (tx: EventTransaction, state: "committed" | "rolled_back") => {
    if (tx.state === "committed" || tx.state === "rolled_back") return;
    if (state === "rolled_back") rollback(tx.connection);
    tx.state = state;
    if (tx.watchdog !== undefined) clearTimeout(tx.watchdog);
    if (open.get(tx.key) === tx) open.delete(tx.key);
    busy.delete(tx.key);
    tx.unlock();
  };

  const arm = (tx: EventTransaction, leaseMs: number) => {
    if (tx.watchdog !== undefined) clearTimeout(tx.watchdog);
    tx.watchdog = setTimeout(
      () => {
        if (tx.state === "open") end(tx, "rolled_back");
      },
      Math.max(1, Math.min(leaseMs, 2_147_483_647)),
    );
    (tx.watchdog as { unref?: () => void }).unref?.();
  };

  /**
   * Opens the transaction of `key`: this process's turn, `BEGIN IMMEDIATE`, then the done
   * mark's look-up. `key` undefined: an event without a key (nothing to deduplicate).
   */
  const begin = async (
    key: string | undefined,
  ): Promise<
    { status: "claimed"; tx: EventTransaction } | { status: "in_flight" | "completed" }
  > => {
    const name = key ?? `~nokey:${randomUUID()}`;
    if (busy.has(name)) return { status: "in_flight" };
    busy.add(name);
    let unlock: (() => void) | undefined;
    try {
      const connection = await connect();
      unlock = await takeTurn(timeoutMs);
      await retryBusy(() => connection.exec("BEGIN IMMEDIATE"), timeoutMs);
      let status: string | undefined;
      try {
        status =
          key === undefined
            ? undefined
            : connection.get<{ status: string }>(sql.status, [key])?.status;
      } catch (error) {
        rollback(connection);
        throw error;
      }
      if (status === "done") {
        rollback(connection);
        busy.delete(name);
        unlock();
        return { status: "completed" };
      }
      const tx: EventTransaction = {
        key: name,
        token: randomUUID(),
        state: "open",
        connection,
        unlock,
        watchdog: undefined,
      };
      return { status: "claimed", tx };
    } catch (error) {
      busy.delete(name);
      unlock?.();
      throw storeFailed(
        `could not open the transaction of event ${key ?? "(no key)"}: ${errorMessage(error)}.`,
        error,
      );
    }
  };

  const handleOf = (tx: EventTransaction): Tx => {
    const live = () => {
      if (tx.state !== "running") {
        throw new MappaWebhookError(
          "handler_failed",
          `@mappa-webhooks/sqlite: the transaction of event ${tx.key} has ended; a handler may use its transaction only until it returns (await every statement).`,
        );
      }
      return tx.connection;
    };
    return {
      key: tx.key,
      get database() {
        return live().database as TDatabase;
      },
      run: (text, params) => live().run(text, params),
      get: (text, params) => live().get(text, params),
      all: (text, params) => live().all(text, params),
      exec: (text) => live().exec(text),
    };
  };

  const recordFailure = (
    event: MappaEvent,
    key: string,
    connection: SqliteConnection,
    error: unknown,
  ) => {
    if (!recordFailures) return Promise.resolve();
    const now = Date.now();
    const text = errorMessage(error).slice(0, 2000);
    return retryBusy(
      () => connection.run(sql.recordFailure, [...eventValues(event, key), text, now, now]),
      timeoutMs,
    ).then(
      () => {},
      () => {},
    );
  };

  /** Runs the handler in `tx`, marks the event done and commits; rolls back on any failure. */
  const execute = async (event: MappaEvent, tx: EventTransaction) => {
    tx.state = "running";
    if (tx.watchdog !== undefined) clearTimeout(tx.watchdog);
    try {
      const handler = event.known ? on[event.type] : onUnknown;
      if (handler !== undefined) {
        await (handler as (event: MappaEvent, tx: Tx) => unknown)(event, handleOf(tx));
      }
      tx.state = "committing";
      const now = Date.now();
      tx.connection.run(sql.markDone, [...eventValues(event, tx.key), now, now, now]);
      tx.connection.exec("COMMIT");
      end(tx, "committed");
    } catch (error) {
      // Rolled back, then the attempt recorded while this process's turn is still held, so
      // the record never lands in another event's transaction; then the turn passes on.
      tx.state = "failing";
      rollback(tx.connection);
      await recordFailure(event, tx.key, tx.connection, error);
      end(tx, "rolled_back");
      throw error;
    }
  };

  const run = async (event: MappaEvent): Promise<"handled" | "duplicate"> => {
    const claimed = event.idempotencyKey === undefined ? undefined : open.get(event.idempotencyKey);
    if (claimed !== undefined && claimed.state === "open") {
      await execute(event, claimed);
      return "handled";
    }
    // Not claimed through the receiver's store (e.g. `idempotency: false`, or no key).
    const begun = await begin(event.idempotencyKey);
    if (begun.status === "completed") return "duplicate";
    if (!("tx" in begun)) {
      throw new MappaWebhookError(
        "event_in_flight",
        `@mappa-webhooks/sqlite: event ${event.idempotencyKey} is being handled in this process right now; retry later.`,
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

  // Tracks jobs too (createMappaRecovery), each statement in this process's turn on the
  // connection, so it never lands inside another event's open transaction.
  const tracking = sqliteJobTracking(connect, t.trackedJobs, {
    timeoutMs,
    exclusive: async (work) => {
      const unlock = await takeTurn(timeoutMs);
      try {
        return await work();
      } finally {
        unlock();
      }
    },
  });
  const idempotency: Required<IdempotencyStore> & JobTrackingStore = {
    ...tracking,
    async claim(key, { leaseMs }) {
      const begun = await begin(key);
      if (!("tx" in begun)) return { status: begun.status };
      open.set(key, begun.tx);
      arm(begun.tx, leaseMs ?? DEFAULT_LEASE_MS);
      return { status: "claimed", token: begun.tx.token };
    },
    async complete(key, token) {
      const tx = open.get(key);
      if (tx === undefined || tx.token !== token || tx.state !== "open") return;
      // The handlers ran without this package's wrapper: record the done mark now.
      try {
        const now = Date.now();
        tx.connection.run(sql.markDone, [...eventValues(undefined, key), now, now, now]);
        tx.connection.exec("COMMIT");
        end(tx, "committed");
      } catch (error) {
        end(tx, "rolled_back");
        throw storeFailed(`could not commit event ${key}: ${errorMessage(error)}.`, error);
      }
    },
    async release(key, token) {
      const tx = open.get(key);
      if (tx === undefined || tx.token !== token) return;
      end(tx, "rolled_back");
    },
    async renew(key, token, { leaseMs }) {
      const tx = open.get(key);
      if (tx === undefined || tx.token !== token) return false;
      if (tx.state === "committing" || tx.state === "committed") return true;
      if (tx.state === "open") arm(tx, leaseMs);
      return tx.state === "open" || tx.state === "running";
    },
  };

  return {
    receiverOptions: { idempotency, on: handlers, onUnknown: wrapper },
    run,
    ready: connect,
    async close() {
      for (const tx of [...open.values()]) end(tx, "rolled_back");
      if (!ownsConnection) return;
      const connection = await connect().catch(() => undefined);
      connection?.close();
    },
  };
}
