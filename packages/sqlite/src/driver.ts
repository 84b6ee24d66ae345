import { MappaWebhookError } from "@mappa-webhooks/core";

/**
 * A value SQLite takes as a parameter in every driver (no booleans: use 0 and 1).
 *
 * @example
 * ```ts
 * const values: SqliteValue[] = ["evt_123", 1, null];
 * ```
 */
export type SqliteValue = string | number | bigint | null | Uint8Array;

/**
 * What a write statement reports, the same in every driver.
 *
 * @example
 * ```ts
 * const { changes }: SqliteRunResult = tx.run("DELETE FROM reports WHERE id = ?", [id]);
 * ```
 */
export interface SqliteRunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

/** The drivers this package speaks to. */
export type SqliteDriverName = "node:sqlite" | "better-sqlite3" | "bun:sqlite";

/**
 * One SQLite connection behind a driver-neutral API: `node:sqlite`'s `DatabaseSync`,
 * better-sqlite3's `Database` or Bun's `bun:sqlite` `Database`, as
 * {@link openSqliteDatabase} or {@link sqliteConnection} give it. Statements are prepared
 * once and cached.
 *
 * @example
 * ```ts
 * const connection = await openSqliteDatabase("./data/mappa-webhooks.db");
 * connection.run("INSERT INTO notes (text) VALUES (?)", ["hello"]);
 * console.log(connection.driver, connection.get("SELECT count(*) AS n FROM notes"));
 * ```
 */
export interface SqliteConnection<TDatabase = unknown> {
  /** Which driver is underneath. */
  readonly driver: SqliteDriverName;
  /** The driver's own database object, for query builders and anything this API lacks. */
  readonly database: TDatabase;
  /** Runs one or more statements without parameters. */
  exec(sql: string): void;
  /** Runs a write statement. */
  run(sql: string, params?: readonly SqliteValue[]): SqliteRunResult;
  /** The first row, or `undefined`. */
  get<TRow = Record<string, unknown>>(
    sql: string,
    params?: readonly SqliteValue[],
  ): TRow | undefined;
  /** Every row. */
  all<TRow = Record<string, unknown>>(sql: string, params?: readonly SqliteValue[]): TRow[];
  /** Closes the database. */
  close(): void;
}

interface StatementLike {
  run(...params: unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

interface DatabaseLike {
  prepare(sql: string): StatementLike;
  exec(sql: string): unknown;
  close(): unknown;
  pragma?: unknown;
  query?: unknown;
}

const PREFIX = "@mappa-webhooks/sqlite: ";

/** An error of this package, its message prefixed with the package name. */
export function sqliteError(
  code: "invalid_options" | "idempotency_store_failed" | "handler_failed",
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

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The database is locked by another connection (SQLITE_BUSY, or SQLITE_LOCKED). */
export function isBusy(error: unknown): boolean {
  const e = error as { code?: unknown; errcode?: unknown; errno?: unknown } | null;
  if (e === null || typeof e !== "object") return false;
  if (typeof e.code === "string" && /^SQLITE_(BUSY|LOCKED)/.test(e.code)) return true;
  const primary = typeof e.errcode === "number" ? e.errcode : e.errno;
  if (typeof primary === "number" && ((primary & 0xff) === 5 || (primary & 0xff) === 6)) {
    return true;
  }
  return /database (table )?is locked|database is busy/i.test(errorMessage(error));
}

/** A table is missing: the schema was not created (`migrate: false` and no `migrate()`). */
export function isMissingTable(error: unknown): boolean {
  return /no such table/i.test(errorMessage(error));
}

function whichDriver(database: DatabaseLike): SqliteDriverName {
  if (typeof database.pragma === "function") return "better-sqlite3";
  if (typeof database.query === "function") return "bun:sqlite";
  return "node:sqlite";
}

function isDatabaseLike(value: unknown): value is DatabaseLike {
  const candidate = value as Partial<DatabaseLike> | null;
  return (
    candidate !== null &&
    typeof candidate === "object" &&
    typeof candidate.prepare === "function" &&
    typeof candidate.exec === "function" &&
    typeof candidate.close === "function"
  );
}

/**
 * Wraps a database object you opened yourself (`new DatabaseSync(file)` from `node:sqlite`,
 * `new Database(file)` from better-sqlite3 or from `bun:sqlite`) in the driver-neutral
 * {@link SqliteConnection}. The package's factories call it for you when you pass `database`.
 *
 * @example
 * ```ts
 * import Database from "better-sqlite3";
 * const connection = sqliteConnection(new Database("./data/mappa-webhooks.db"));
 * connection.driver; // "better-sqlite3"
 * ```
 */
export function sqliteConnection<TDatabase>(database: TDatabase): SqliteConnection<TDatabase> {
  if (isConnection(database)) return database as unknown as SqliteConnection<TDatabase>;
  if (!isDatabaseLike(database)) {
    throw sqliteError(
      "invalid_options",
      "`database` must be a database from node:sqlite (DatabaseSync), better-sqlite3 or bun:sqlite, or a file name.",
    );
  }
  const db = database as DatabaseLike;
  const driver = whichDriver(db);
  const statements = new Map<string, StatementLike>();
  const prepare = (sql: string): StatementLike => {
    let statement = statements.get(sql);
    if (statement === undefined) {
      statement = db.prepare(sql);
      if (statements.size > 200) statements.clear();
      statements.set(sql, statement);
    }
    return statement;
  };
  const connection: SqliteConnection<TDatabase> = {
    driver,
    database,
    exec(sql) {
      db.exec(sql);
    },
    run(sql, params = []) {
      const result = prepare(sql).run(...params);
      return { changes: Number(result.changes), lastInsertRowid: result.lastInsertRowid };
    },
    get<TRow>(sql: string, params: readonly SqliteValue[] = []) {
      // bun:sqlite answers null for no row; the others undefined.
      return (prepare(sql).get(...params) ?? undefined) as TRow | undefined;
    },
    all<TRow>(sql: string, params: readonly SqliteValue[] = []) {
      return prepare(sql).all(...params) as TRow[];
    },
    close() {
      statements.clear();
      db.close();
    },
  };
  connections.add(connection);
  return connection;
}

const connections = new WeakSet<object>();
function isConnection(value: unknown): boolean {
  return typeof value === "object" && value !== null && connections.has(value);
}

/**
 * Options of {@link openSqliteDatabase}.
 *
 * @example
 * ```ts
 * const options: OpenSqliteOptions = { driver: "better-sqlite3", busyTimeoutMs: 50 };
 * ```
 */
export interface OpenSqliteOptions {
  /**
   * The driver to use. Default: `bun:sqlite` under Bun, `node:sqlite` where Node has it
   * (22.13+ and 24), otherwise better-sqlite3 (install it: `npm install better-sqlite3`).
   */
  driver?: SqliteDriverName;
  /**
   * Longest a single statement waits, blocking, for another process's write lock before
   * this package retries it without blocking. Default 50 ms.
   */
  busyTimeoutMs?: number;
}

/** The longest single blocking wait for a lock; longer waits are retried asynchronously. */
export const DEFAULT_BUSY_TIMEOUT_MS = 50;

type Loader = () => Promise<unknown>;
// Specifiers in variables: bundlers leave them alone, and a runtime without one never loads it.
const NODE_SQLITE = "node:sqlite";
const BUN_SQLITE = "bun:sqlite";
const BETTER_SQLITE3 = "better-sqlite3";
const importModule = (specifier: string) => import(/* @vite-ignore */ specifier);

const loaders: Record<SqliteDriverName, Loader> = {
  "node:sqlite": async () => {
    // Loaded through getBuiltinModule where it exists, so the import never reaches a bundler.
    const builtin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule?.(
      NODE_SQLITE,
    ) as { DatabaseSync?: unknown } | undefined;
    const mod = builtin ?? ((await importModule(NODE_SQLITE)) as { DatabaseSync?: unknown });
    return mod.DatabaseSync;
  },
  "bun:sqlite": async () => ((await importModule(BUN_SQLITE)) as { Database?: unknown }).Database,
  "better-sqlite3": async () => {
    const mod = (await importModule(BETTER_SQLITE3)) as { default?: unknown };
    return mod.default ?? mod;
  },
};

/** The driver this runtime would use by default. */
export function defaultDriver(): SqliteDriverName {
  if (typeof (process.versions as { bun?: string }).bun === "string") return "bun:sqlite";
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  if (major > 22 || (major === 22 && minor >= 13)) return "node:sqlite";
  return "better-sqlite3";
}

function fixFor(driver: SqliteDriverName): string {
  if (driver === "better-sqlite3") {
    return "Install it (`npm install better-sqlite3`; version 12 on Node 20), or run on Node 22.13+ / 24 (node:sqlite) or Bun (bun:sqlite).";
  }
  if (driver === "node:sqlite") return "node:sqlite needs Node 22.13 or later (or 24).";
  return "bun:sqlite exists only under Bun.";
}

/**
 * Opens (creating if needed) the SQLite database `filename` with the best driver this runtime
 * has, set up for webhooks: WAL journal (readers never wait for the writer, several processes
 * share the file), `synchronous = FULL` (a committed done mark survives a power cut), and a
 * short `busy_timeout` (this package retries a locked write without blocking). The file's
 * folder must exist.
 *
 * @example
 * ```ts
 * const connection = await openSqliteDatabase("./data/mappa-webhooks.db");
 * console.log(connection.driver); // "node:sqlite" on Node 24, "better-sqlite3" on Node 20
 * ```
 */
export async function openSqliteDatabase(
  filename: string,
  options: OpenSqliteOptions = {},
): Promise<SqliteConnection> {
  if (typeof filename !== "string" || filename === "") {
    throw sqliteError("invalid_options", 'openSqliteDatabase needs a file name (or ":memory:").');
  }
  const driver = options.driver ?? defaultDriver();
  if (!(driver in loaders)) {
    throw sqliteError(
      "invalid_options",
      `unknown driver ${JSON.stringify(driver)}: use "node:sqlite", "better-sqlite3" or "bun:sqlite".`,
    );
  }
  let Database: unknown;
  try {
    Database = await loaders[driver]();
  } catch (error) {
    throw sqliteError(
      "invalid_options",
      `the ${driver} driver could not be loaded (${errorMessage(error)}). ${fixFor(driver)}`,
      error,
    );
  }
  if (typeof Database !== "function") {
    throw sqliteError(
      "invalid_options",
      `the ${driver} driver is not available here. ${fixFor(driver)}`,
    );
  }
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  let database: unknown;
  try {
    database = new (Database as new (file: string) => unknown)(filename);
  } catch (error) {
    throw sqliteError(
      "invalid_options",
      `could not open ${filename} with ${driver}: ${errorMessage(error)}. Check that its folder exists and is writable.`,
      error,
    );
  }
  const connection = sqliteConnection(database);
  await configure(connection, busyTimeoutMs);
  return connection;
}

/** WAL, FULL sync and the busy timeout; switching to WAL may meet another process's lock. */
export async function configure(connection: SqliteConnection, busyTimeoutMs: number) {
  connection.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.ceil(busyTimeoutMs))}`);
  await retryBusy(() => {
    const mode = connection.get<Record<string, unknown>>("PRAGMA journal_mode = WAL");
    const value = mode === undefined ? undefined : Object.values(mode)[0];
    return value;
  }, 10_000);
  connection.exec("PRAGMA synchronous = FULL");
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `work` (synchronous), retrying without blocking while another process holds the lock,
 * for at most `timeoutMs`; then throws the last busy error.
 */
export async function retryBusy<T>(work: () => T, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return work();
    } catch (error) {
      if (!isBusy(error) || performance.now() >= deadline) throw error;
    }
    // Short pauses first (a write lock is held for microseconds), then up to 25 ms.
    await sleep(Math.min(25, 1 + attempt * 2) * (0.5 + Math.random()));
  }
}
