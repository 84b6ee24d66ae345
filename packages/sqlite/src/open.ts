import {
  configure,
  DEFAULT_BUSY_TIMEOUT_MS,
  errorMessage,
  isBusy,
  openSqliteDatabase,
  retryBusy,
  type SqliteConnection,
  type SqliteDriverName,
  sqliteConnection,
  sqliteError,
} from "./driver.js";
import { migrateConnection, resolveTables, type SqliteTablesOptions } from "./schema.js";

/**
 * Where the data lives and how to reach it: the options every factory of this package takes.
 *
 * @example
 * ```ts
 * const options: SqliteDatabaseOptions = { database: "./data/mappa-webhooks.db", timeoutMs: 2000 };
 * ```
 */
export interface SqliteDatabaseOptions extends SqliteTablesOptions {
  /**
   * A file name (opened with the best driver this runtime has, see `driver`), or a database
   * you opened yourself: `node:sqlite`'s `DatabaseSync`, better-sqlite3's `Database`, Bun's
   * `bun:sqlite` `Database`, or a {@link SqliteConnection}.
   */
  database: string | object;
  /** With a file name: the driver to open it with. Default: the runtime's best (see README). */
  driver?: SqliteDriverName;
  /**
   * Longest one statement blocks waiting for another process's write lock (`busy_timeout`);
   * past it the package retries without blocking, until `timeoutMs`. Default 50 ms.
   */
  busyTimeoutMs?: number;
  /**
   * Longest wait for the database (another process's write lock, or this process's other
   * deliveries' transactions) before giving up with `idempotency_store_failed` (503, Mappa
   * retries). Default 5000 ms.
   */
  timeoutMs?: number;
  /** Create the tables if missing when first used (idempotent). Default `true`. */
  migrate?: boolean;
}

export const DEFAULT_TIMEOUT_MS = 5000;

export function invalidOptions(api: string, message: string) {
  return sqliteError("invalid_options", `${api}: ${message}`);
}

export function checkPositive(api: string, name: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > 2_147_483_647) {
    throw invalidOptions(
      api,
      `\`${name}\` must be a positive number of milliseconds, got ${String(value)}.`,
    );
  }
}

/** Checks the options shared by every factory; throws `invalid_options`. */
export function checkDatabaseOptions(api: string, options: unknown): SqliteDatabaseOptions {
  if (options === null || typeof options !== "object") {
    throw invalidOptions(
      api,
      'needs `{ database }`: a file name such as "./data/mappa-webhooks.db", or an open database.',
    );
  }
  const o = options as SqliteDatabaseOptions;
  const { database } = o;
  if (typeof database === "string") {
    if (database === "") throw invalidOptions(api, "`database` is an empty file name.");
  } else if (database === null || typeof database !== "object") {
    throw invalidOptions(
      api,
      'needs `{ database }`: a file name such as "./data/mappa-webhooks.db", or a database from node:sqlite, better-sqlite3 or bun:sqlite.',
    );
  } else {
    // Validates the object now, so a wrong one fails at start-up.
    sqliteConnection(database);
  }
  checkPositive(api, "timeoutMs", o.timeoutMs);
  if (o.busyTimeoutMs !== undefined) {
    if (
      typeof o.busyTimeoutMs !== "number" ||
      !(o.busyTimeoutMs >= 0) ||
      o.busyTimeoutMs > 60_000
    ) {
      throw invalidOptions(api, "`busyTimeoutMs` must be between 0 and 60000 ms.");
    }
  }
  if (o.migrate !== undefined && typeof o.migrate !== "boolean") {
    throw invalidOptions(api, "`migrate` must be true or false.");
  }
  resolveTables(o);
  return o;
}

/**
 * The connection of a factory, opened (and the tables created) on first use, once. A failure
 * is not kept: the next call tries again.
 */
export function lazyConnection(options: SqliteDatabaseOptions): () => Promise<SqliteConnection> {
  let ready: Promise<SqliteConnection> | undefined;
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  const open = async (): Promise<SqliteConnection> => {
    const { database } = options;
    let connection: SqliteConnection;
    if (typeof database === "string") {
      connection = await openSqliteDatabase(database, {
        ...(options.driver === undefined ? {} : { driver: options.driver }),
        busyTimeoutMs,
      });
    } else {
      connection = sqliteConnection(database);
      await configure(connection, busyTimeoutMs);
    }
    if (options.migrate !== false) {
      await retryBusy(() => migrateConnection(connection, options), 30_000);
    }
    return connection;
  };
  return () => {
    ready ??= open().catch((error: unknown) => {
      ready = undefined;
      throw error;
    });
    return ready;
  };
}

/** The fix for a failure, when one can be named. */
export function hintFor(error: unknown): string {
  if (/no such table/i.test(errorMessage(error))) {
    return " The tables do not exist: leave `migrate` on, or run `migrate({ database })` first.";
  }
  if (isBusy(error)) {
    return " Another process (or another delivery in this one) held the database's write lock all that time; keep transactional handlers short, or raise `timeoutMs`.";
  }
  return "";
}

/** `idempotency_store_failed` (503) for a failure while deduplicating. */
export function storeFailed(message: string, cause?: unknown) {
  if (cause !== undefined && (cause as { code?: unknown }).code === "invalid_options") {
    return cause as ReturnType<typeof sqliteError>;
  }
  return sqliteError(
    "idempotency_store_failed",
    `${message}${cause === undefined ? "" : hintFor(cause)} Answered 503 so Mappa retries the delivery.`,
    cause,
  );
}
