import { MappaWebhookError } from "@mappa-webhooks/core";

/**
 * What a query resolves with: the part of `pg`'s `QueryResult` this package reads.
 *
 * @example
 * ```ts
 * const result: PgQueryResult = await pool.query("SELECT 1");
 * ```
 */
export interface PgQueryResult {
  rows: unknown[];
  rowCount: number | null;
}

/**
 * A `NOTIFY` as `pg` delivers it on a client's `"notification"` event.
 *
 * @example
 * ```ts
 * client.on("notification", (message: PgNotification) => console.log(message.channel));
 * ```
 */
export interface PgNotification {
  channel: string;
  payload?: string | undefined;
}

/**
 * The part of a `pg` `PoolClient` this package uses. Pass what your pool's `connect()` returns.
 *
 * @example
 * ```ts
 * import pg from "pg";
 * const client: PgClientLike = await new pg.Pool().connect();
 * ```
 */
export interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<PgQueryResult>;
  /** Back to the pool; with an error (or `true`) the connection is closed instead. */
  release(error?: Error | boolean): void;
  on?(event: "notification", listener: (message: PgNotification) => void): unknown;
  on?(event: "error", listener: (error: Error) => void): unknown;
  removeListener?(event: "notification", listener: (message: PgNotification) => void): unknown;
  removeListener?(event: "error", listener: (error: Error) => void): unknown;
}

/**
 * The part of a `pg` `Pool` this package uses: `query` and `connect`. Any pool with this
 * interface works, e.g. Neon's serverless `Pool` (`@neondatabase/serverless`).
 *
 * @example
 * ```ts
 * import pg from "pg";
 * const pool: PgPoolLike = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * ```
 */
export interface PgPoolLike<TClient extends PgClientLike = PgClientLike> {
  query(text: string, values?: unknown[]): Promise<PgQueryResult>;
  connect(): Promise<TClient>;
}

/**
 * The client type a pool's `connect()` resolves with (`pg.PoolClient` for a `pg.Pool`).
 *
 * @example
 * ```ts
 * type Client = PoolClientOf<pg.Pool>; // pg.PoolClient
 * ```
 */
export type PoolClientOf<TPool> = TPool extends {
  connect(): Promise<infer C>;
  connect(callback: never): void;
}
  ? unknown extends C
    ? SingleClientOf<TPool>
    : C
  : SingleClientOf<TPool>;
type SingleClientOf<TPool> = TPool extends { connect(): Promise<infer C> }
  ? unknown extends C
    ? PgClientLike
    : C
  : PgClientLike;

/** The error `pg` throws for a server error: `code` is the SQLSTATE. */
interface PgServerError extends Error {
  code?: string;
}

/** SQLSTATEs of a missing schema or table: `migrate()` was not run. */
const MISSING_RELATION = new Set(["42P01", "3F000"]);

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function sqlState(error: unknown): string | undefined {
  const code = (error as PgServerError | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/** The fix for an error, when one can be named. */
export function hintFor(error: unknown): string {
  if (MISSING_RELATION.has(sqlState(error) ?? "")) {
    return " The tables do not exist: run `migrate({ pool })` or `mappa-webhooks-postgres migrate` first.";
  }
  return "";
}

export function invalidOptions(api: string, message: string): MappaWebhookError {
  return new MappaWebhookError("invalid_options", `${api}: ${message}`);
}

export function checkPool(api: string, pool: unknown): void {
  const candidate = pool as Partial<PgPoolLike> | null | undefined;
  if (
    candidate == null ||
    typeof candidate.query !== "function" ||
    typeof candidate.connect !== "function"
  ) {
    throw invalidOptions(
      api,
      "needs `{ pool }`: a `pg` Pool (or any pool with `query` and `connect`, e.g. Neon's serverless Pool).",
    );
  }
}

export function checkPositive(api: string, name: string, value: number | undefined): void {
  if (value !== undefined && !(typeof value === "number" && Number.isFinite(value) && value > 0)) {
    throw invalidOptions(api, `\`${name}\` must be a positive number, got ${String(value)}.`);
  }
}

/**
 * Resolves like `promise`, or rejects with `onTimeout()` after `ms`. A late rejection of
 * `promise` is swallowed, so it never becomes an unhandled rejection.
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  promise.catch(() => {});
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

/** Checks a client out of the pool within `ms`; a client that arrives late goes back. */
export async function connectWithin<TClient extends PgClientLike>(
  pool: PgPoolLike<TClient>,
  ms: number,
  onTimeout: () => Error,
): Promise<TClient> {
  let timedOut = false;
  const connecting = pool.connect();
  connecting.then(
    (client) => {
      if (timedOut) client.release();
    },
    () => {},
  );
  try {
    return await withTimeout(connecting, ms, onTimeout);
  } catch (error) {
    timedOut = true;
    throw error;
  }
}

/**
 * A pool whose every `connect()` hands out `client` and whose `release()` does nothing: lets a
 * query builder that wants a pool (Kysely's `PostgresDialect`) run inside a transaction this
 * package opened. Never call the builder's own `transaction()` on it.
 *
 * @example
 * ```ts
 * import { Kysely, PostgresDialect } from "kysely";
 *
 * on: {
 *   "report.completed": async (event, tx) => {
 *     const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: singleClientPool(tx) }) });
 *     await db.insertInto("reports").values({ id: event.data.reportId }).execute();
 *   },
 * }
 * ```
 */
export function singleClientPool<TClient extends PgClientLike>(
  client: TClient,
): { query: TClient["query"]; connect(): Promise<TClient>; end(): Promise<void>; options: object } {
  // Every property of the real client, bound to it, except a `release` that keeps it.
  const borrowed = new Proxy(client, {
    get(target, property) {
      if (property === "release") return () => {};
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return {
    query: ((text: string, values?: unknown[]) => client.query(text, values)) as TClient["query"],
    connect: async () => borrowed,
    end: async () => {},
    options: {},
  };
}
