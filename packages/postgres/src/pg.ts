import { createHash } from "node:crypto";
import { MappaWebhookError, type MappaWebhookErrorCode } from "@mappa-webhooks/core";

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

/**
 * A statement sent by name: Postgres parses and plans it once per connection, and every later
 * run only binds its parameters. The name carries a hash of the text, so two inboxes with other
 * tables on one pool never reuse each other's statement.
 */
export interface NamedStatement {
  name: string;
  text: string;
}

export function namedStatement(prefix: string, text: string): NamedStatement {
  return {
    name: `${prefix}_${createHash("sha256").update(text).digest("hex").slice(0, 12)}`,
    text,
  };
}

/**
 * Runs `statement`: prepared (pg's `{ name, text, values }`, which pg, pg-pool and Neon's Pool
 * take) or, with `prepared` false, as plain text for pools that take only `(text, values)`.
 */
export function runStatement(
  pool: PgPoolLike,
  statement: NamedStatement,
  values: unknown[],
  prepared: boolean,
): Promise<PgQueryResult> {
  if (!prepared) return pool.query(statement.text, values);
  const configurable = pool as unknown as {
    query(config: { name: string; text: string; values: unknown[] }): Promise<PgQueryResult>;
  };
  return configurable.query({ name: statement.name, text: statement.text, values });
}

/** The error `pg` throws for a server error: `code` is the SQLSTATE. */
interface PgServerError extends Error {
  code?: string;
}

/** SQLSTATEs of a missing schema or table: `migrate()` was not run. */
const MISSING_RELATION = new Set(["42P01", "3F000"]);
/**
 * SQLSTATEs of a named prepared statement that exists where it should not (42P05) or is gone
 * (26000): what a pooler in transaction mode (PgBouncer before 1.21, or without
 * `max_prepared_statements`) does to a session's statements.
 */
const PREPARED_STATEMENT_LOST = new Set(["42P05", "26000"]);

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
  if (PREPARED_STATEMENT_LOST.has(sqlState(error) ?? "")) {
    return " A connection pooler in transaction mode is sharing sessions: pass `preparedStatements: false` to `createInbox`, or set PgBouncer's `max_prepared_statements` (1.21 or later).";
  }
  return "";
}

const PREFIX = "@mappa-webhooks/postgres: ";

/**
 * A `MappaWebhookError` whose message carries one prefix, this package's name (the core's
 * constructor adds its own, which would read `@mappa-webhooks: @mappa-webhooks/postgres: …`).
 */
export function postgresError(
  code: MappaWebhookErrorCode,
  message: string,
  options: { cause?: unknown } = {},
): MappaWebhookError {
  const text = message.startsWith(PREFIX) ? message : `${PREFIX}${message}`;
  const error = new MappaWebhookError(code, text, options);
  const at = error.message.indexOf(PREFIX);
  if (at > 0) error.message = error.message.slice(at);
  return error;
}

export function invalidOptions(api: string, message: string): MappaWebhookError {
  return postgresError("invalid_options", api === "" ? message : `${api}: ${message}`);
}

/** Text Postgres can store: a NUL byte (which `text` rejects) becomes `\\u0000`; at most `max` characters. */
export function storableText(text: string, max = 2000): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the NUL byte is what is replaced.
  const clean = text.replace(/\u0000/g, "\\u0000");
  if (clean.length <= max) return clean;
  // Never cut a surrogate pair in half.
  const end = /[\uD800-\uDBFF]/.test(clean.charAt(max - 1)) ? max - 1 : max;
  return `${clean.slice(0, end)}…`;
}

/** The largest timer and Postgres timeout: 2^31 - 1 ms (about 24.8 days). */
export const MAX_TIMEOUT_MS = 2_147_483_647;

/** A duration option: positive, finite, at most {@link MAX_TIMEOUT_MS}. */
export function checkDuration(api: string, name: string, value: number | undefined): void {
  checkPositive(api, name, value);
  if (value !== undefined && Math.ceil(value) > MAX_TIMEOUT_MS) {
    throw invalidOptions(
      api,
      `\`${name}\` is ${value} ms, above the longest timer Node and Postgres accept (${MAX_TIMEOUT_MS} ms, about 24.8 days); pick a smaller value.`,
    );
  }
}

/** A duration for a Postgres timeout setting: a whole number of ms in 1 .. 2^31 - 1. */
export function pgTimeoutMs(ms: number): number {
  if (!Number.isFinite(ms)) return MAX_TIMEOUT_MS;
  return Math.min(MAX_TIMEOUT_MS, Math.max(1, Math.ceil(ms)));
}

/**
 * The `statement_timeout` that backs up a handler deadline: a little later than the deadline,
 * so the deadline (which also ends the backend) is what a stuck handler meets first.
 */
export function statementTimeoutFor(handlerTimeoutMs: number): number {
  return pgTimeoutMs(handlerTimeoutMs + Math.max(5000, handlerTimeoutMs / 10));
}

/** SQLSTATE classes and messages of a lost connection (as opposed to a failed statement). */
export function isConnectionError(error: unknown): boolean {
  const state = sqlState(error) ?? "";
  if (state.startsWith("08") || state === "57P01" || state === "57P02" || state === "57P03") {
    return true;
  }
  const message = errorMessage(error);
  return /Connection terminated|not queryable|ECONNRESET|ECONNREFUSED|EPIPE|socket hang up/i.test(
    message,
  );
}

interface EmitterLike {
  on?(event: string, listener: (...args: never[]) => void): unknown;
  listenerCount?(event: string): number;
}

const guardedPools = new WeakSet<object>();
const guardedClients = new WeakSet<object>();
let warnedNoPoolListener = false;
const ignoreClientError = () => {
  // The client is marked unusable by the driver; its next query fails and it is released
  // with the error, so nothing is lost by not crashing here.
};

/**
 * Gives `client` an `error` listener of its own, for good: a connection that fails while no
 * one else listens (a FATAL between two queries) must never crash the process.
 */
export function guardClient(client: unknown): void {
  const emitter = client as EmitterLike | null;
  if (emitter === null || typeof emitter !== "object" || typeof emitter.on !== "function") return;
  if (guardedClients.has(emitter)) return;
  guardedClients.add(emitter);
  emitter.on("error", ignoreClientError);
}

function warn(message: string): void {
  const node = (globalThis as { process?: { emitWarning?: (m: string, o: object) => void } })
    .process;
  if (typeof node?.emitWarning === "function") {
    node.emitWarning(message, { code: "MAPPA_POSTGRES_POOL_ERROR_LISTENER" });
  } else console.warn(message);
}

/**
 * Makes the pool's clients safe from connection faults: every new client gets an `error`
 * listener the moment it connects. `pg`'s Pool takes its own listener off a client it hands
 * out before the caller can add one, so a FATAL that arrives with the connection's first
 * ReadyForQuery (e.g. `pg_terminate_backend`, a Postgres restart) would otherwise be an
 * unhandled `error` event. Warns once when the pool itself has no `error` listener: idle
 * clients report their failures there, and without one Node ends the process.
 */
export function guardPool(pool: unknown): void {
  const emitter = pool as EmitterLike | null;
  if (emitter === null || typeof emitter !== "object" || guardedPools.has(emitter)) return;
  guardedPools.add(emitter);
  if (typeof emitter.on !== "function") return;
  emitter.on("connect", ((client: unknown) => guardClient(client)) as (...args: never[]) => void);
  if (
    !warnedNoPoolListener &&
    typeof emitter.listenerCount === "function" &&
    emitter.listenerCount("error") === 0
  ) {
    warnedNoPoolListener = true;
    warn(
      `${PREFIX}the pg Pool has no "error" listener: when an idle connection fails (a Postgres restart, pg_terminate_backend, a network cut) Node ends the process. Add one, e.g. pool.on("error", (error) => console.error(error.message)).`,
    );
  }
}

export function checkPool(api: string, pool: unknown): void {
  checkPoolShape(api, pool);
  guardPool(pool);
}

function checkPoolShape(api: string, pool: unknown): void {
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
