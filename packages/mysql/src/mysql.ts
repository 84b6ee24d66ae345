import { MappaWebhookError } from "@mappa-webhooks/core";

/**
 * The part of a mysql2/promise connection this package uses (a `PoolConnection`).
 *
 * @example
 * ```ts
 * import mysql from "mysql2/promise";
 * const connection: MysqlConnectionLike = await mysql.createPool(process.env.MYSQL_URL!).getConnection();
 * ```
 */
export interface MysqlConnectionLike {
  query(sql: string, values?: unknown[]): Promise<[unknown, unknown]>;
  /** Back to the pool. */
  release(): void;
  /** Closes the connection instead (after a failure). */
  destroy?(): void;
}

/**
 * The part of a mysql2/promise `Pool` this package uses: `query` and `getConnection`.
 *
 * @example
 * ```ts
 * import mysql from "mysql2/promise";
 * const pool: MysqlPoolLike = mysql.createPool(process.env.MYSQL_URL!);
 * ```
 */
export interface MysqlPoolLike<TConnection extends MysqlConnectionLike = MysqlConnectionLike> {
  query(sql: string, values?: unknown[]): Promise<[unknown, unknown]>;
  getConnection(): Promise<TConnection>;
}

/**
 * The connection type a pool's `getConnection()` resolves with (`PoolConnection` for a
 * mysql2/promise `Pool`).
 *
 * @example
 * ```ts
 * type Connection = PoolConnectionOf<Pool>; // mysql2/promise PoolConnection
 * ```
 */
export type PoolConnectionOf<TPool> = TPool extends { getConnection(): Promise<infer C> }
  ? unknown extends C
    ? MysqlConnectionLike
    : C
  : MysqlConnectionLike;

const PREFIX = "@mappa-webhooks/mysql: ";

export function mysqlError(
  code: "invalid_options" | "idempotency_store_failed",
  message: string,
  cause?: unknown,
): MappaWebhookError {
  const error = new MappaWebhookError(
    code,
    `${PREFIX}${message}`,
    cause === undefined ? {} : { cause },
  );
  const at = error.message.indexOf(PREFIX);
  if (at > 0) error.message = error.message.slice(at);
  return error;
}

export function invalidOptions(api: string, message: string): MappaWebhookError {
  return mysqlError("invalid_options", `${api}: ${message}`);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The fix for an error, when one can be named. */
export function hintFor(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "ER_NO_SUCH_TABLE") {
    return " The tables do not exist: run `migrate({ pool })` first.";
  }
  if (code === "ECONNREFUSED")
    return " Nothing answers at the pool's address: is MySQL/MariaDB running?";
  return "";
}

export function storeFailed(message: string, cause?: unknown): MappaWebhookError {
  return mysqlError(
    "idempotency_store_failed",
    `${message}${cause === undefined ? "" : hintFor(cause)} Answered 503 so Mappa retries the delivery.`,
    cause,
  );
}

export function checkPool(api: string, pool: unknown): void {
  const candidate = pool as Partial<MysqlPoolLike> | null | undefined;
  if (
    candidate == null ||
    typeof candidate.query !== "function" ||
    typeof candidate.getConnection !== "function"
  ) {
    throw invalidOptions(
      api,
      '`pool` must be a mysql2/promise Pool (`mysql.createPool(url)` from "mysql2/promise"), with query() and getConnection().',
    );
  }
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

/** Rejects with `onTimeout()` if `promise` has not settled within `ms`. */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(onTimeout()), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Rows of a SELECT as mysql2 returns them. */
export function rowsOf<T>(result: [unknown, unknown]): T[] {
  return result[0] as T[];
}

/** `affectedRows` of a write. */
export function affectedRows(result: [unknown, unknown]): number {
  return Number((result[0] as { affectedRows?: number }).affectedRows ?? 0);
}

/**
 * Rows an UPDATE matched, changed or not (a renewal to the same expiry still owns the key):
 * read from the server's info text, or `affectedRows` (which counts matched rows when the
 * connection has the FOUND_ROWS flag, mysql2's default).
 */
export function matchedRows(result: [unknown, unknown]): number {
  const info = (result[0] as { info?: unknown }).info;
  const match = typeof info === "string" ? /Rows matched:\s*(\d+)/i.exec(info) : null;
  return match === null ? affectedRows(result) : Number(match[1]);
}

/** The longest event key stored (the key column is VARCHAR(255)). */
export const MAX_KEY_LENGTH = 255;
