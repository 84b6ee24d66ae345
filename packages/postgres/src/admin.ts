import type { MappaBacklog } from "@mappa-webhooks/core";
import {
  checkPool,
  errorMessage,
  guardClient,
  hintFor,
  invalidOptions,
  type PgPoolLike,
  postgresError,
} from "./pg.js";
import {
  EXPECTED_COLUMNS,
  type PostgresTablesOptions,
  type ResolvedTables,
  resolveTables,
  SCHEMA_VERSION,
  SCHEMA_VERSION_MARK,
  schemaSql,
} from "./schema.js";

/**
 * The pool and the table names: what every admin function takes.
 *
 * @example
 * ```ts
 * const admin: PostgresAdminOptions = { pool, schema: "billing" };
 * await countEvents(admin);
 * ```
 */
export interface PostgresAdminOptions extends PostgresTablesOptions {
  /** A `pg` Pool (or any pool with `query` and `connect`). */
  pool: PgPoolLike;
}

/**
 * An event as stored in the events table.
 *
 * @example
 * ```ts
 * const stored: StoredEvent | undefined = await getEvent({ pool }, "evt_123");
 * if (stored?.status === "failed") console.log(stored.attempts, stored.lastError);
 * ```
 */
export interface StoredEvent {
  /** The idempotency key (primary key). */
  key: string;
  /** The event id Mappa sent, if any. */
  eventId: string | null;
  type: string;
  status: "pending" | "done" | "failed";
  /** Handler attempts so far. */
  attempts: number;
  /** The last failure's message, if the last attempt failed. */
  lastError: string | null;
  receivedAt: Date;
  /** When the next attempt is due (pending events). */
  runAt: Date;
  doneAt: Date | null;
  updatedAt: Date;
  /** The event's JSON as Mappa sent it. */
  payload: unknown;
}

/**
 * Counts of events by status.
 *
 * @example
 * ```ts
 * const { pending, done, failed }: EventCounts = await countEvents({ pool });
 * ```
 */
export interface EventCounts {
  pending: number;
  done: number;
  failed: number;
}

const MIGRATE_LOCK = "@mappa-webhooks/postgres:migrate";
const PRUNE_BATCH = 5000;
const MAX_PRUNE_BATCHES = 100_000;

function adminError(what: string, error: unknown) {
  return postgresError(
    "idempotency_store_failed",
    `${what} failed: ${errorMessage(error)}.${hintFor(error)}`,
    { cause: error },
  );
}

function prepare(api: string, options: PostgresAdminOptions): ResolvedTables {
  if (options === null || typeof options !== "object") {
    throw invalidOptions(api, "needs `{ pool }`.");
  }
  checkPool(api, options.pool);
  return resolveTables(options);
}

const SELECT_COLUMNS =
  "key, event_id, type, status, attempts, last_error, received_at, run_at, done_at, updated_at, payload";

interface EventRow {
  key: string;
  event_id: string | null;
  type: string;
  status: StoredEvent["status"];
  attempts: number;
  last_error: string | null;
  received_at: Date;
  run_at: Date;
  done_at: Date | null;
  updated_at: Date;
  payload: unknown;
}

function toStoredEvent(row: EventRow): StoredEvent {
  return {
    key: row.key,
    eventId: row.event_id,
    type: row.type,
    status: row.status,
    attempts: row.attempts,
    lastError: row.last_error,
    receivedAt: row.received_at,
    runAt: row.run_at,
    doneAt: row.done_at,
    updatedAt: row.updated_at,
    payload: row.payload,
  };
}

/**
 * Creates the schema, the events table and the idempotency table (with their indexes), if they
 * do not exist yet, records the schema version, and checks that existing tables have the
 * columns this package needs (a table made by hand or by something else fails here, with the
 * fix, instead of failing every delivery later). Safe to run at every start and from several
 * processes at once (an advisory lock serialises them). The SQL is {@link schemaSql}, also
 * shipped as `schema.sql`.
 *
 * @example
 * ```ts
 * import pg from "pg";
 * import { migrate } from "@mappa-webhooks/postgres";
 *
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
 * pool.on("error", (error) => console.error(`[postgres] ${error.message}`));
 * await migrate({ pool });
 * ```
 */
export async function migrate(options: PostgresAdminOptions): Promise<void> {
  const t = prepare("migrate", options);
  const sql = schemaSql(options);
  let client: Awaited<ReturnType<PgPoolLike["connect"]>>;
  try {
    client = await options.pool.connect();
  } catch (error) {
    throw adminError("migrate (connecting)", error);
  }
  // A FATAL (a restart, pg_terminate_backend) between two statements must not crash the process.
  guardClient(client);
  let broken: Error | undefined;
  const onError = (error: Error) => {
    broken = error;
  };
  client.on?.("error", onError);
  const release = (error?: Error) => {
    client.removeListener?.("error", onError);
    client.release(broken ?? error);
  };
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [MIGRATE_LOCK]);
    const before = await client.query(
      "SELECT obj_description(to_regclass($1), 'pg_class') AS comment",
      [t.events],
    );
    const recorded = versionOf((before.rows[0] as { comment: string | null } | undefined)?.comment);
    if (recorded !== undefined && recorded > SCHEMA_VERSION) {
      throw postgresError(
        "invalid_options",
        `migrate: ${t.events} has schema ${recorded}, made by a newer @mappa-webhooks/postgres than this one (schema ${SCHEMA_VERSION}). Upgrade @mappa-webhooks/postgres in this app, or point it at another schema with \`{ schema }\`.`,
      );
    }
    await client.query(sql);
    const problems = await shapeProblems(client, t);
    if (problems.length > 0) {
      throw postgresError(
        "invalid_options",
        `migrate: the existing tables do not have the shape of schema ${SCHEMA_VERSION}: ${problems.join("; ")}. They were made by hand, by something else or by an unfinished migration. Rename or drop them (if they hold nothing you need) and run migrate again, or point the package at another schema with \`{ schema }\`. The SQL it expects: \`mappa-webhooks-postgres migrate --print\`.`,
      );
    }
    await client.query("COMMIT");
    release();
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    release(error instanceof Error ? error : new Error(String(error)));
    if (isOwnError(error)) throw error;
    throw adminError("migrate", error);
  }
}

function isOwnError(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("@mappa-webhooks/postgres: migrate: ");
}

function versionOf(comment: string | null | undefined): number | undefined {
  if (typeof comment !== "string" || !comment.startsWith(SCHEMA_VERSION_MARK)) return undefined;
  const version = Number(comment.slice(SCHEMA_VERSION_MARK.length));
  return Number.isInteger(version) ? version : undefined;
}

/** What differs between the tables and what this package needs, in words. */
async function shapeProblems(
  client: Awaited<ReturnType<PgPoolLike["connect"]>>,
  t: ResolvedTables,
): Promise<string[]> {
  const problems: string[] = [];
  for (const [name, table] of [
    ["events", t.events],
    ["idempotency", t.idempotency],
  ] as const) {
    const columns = await client.query(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
         FROM pg_attribute a
        WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
      [table],
    );
    const actual = new Map(
      (columns.rows as Array<{ name: string; type: string }>).map((row) => [row.name, row.type]),
    );
    for (const [column, type] of Object.entries(EXPECTED_COLUMNS[name])) {
      const found = actual.get(column);
      if (found === undefined) problems.push(`${table} has no column ${column} (${type})`);
      else if (found !== type) problems.push(`${table}.${column} is ${found}, not ${type}`);
    }
    const unique = await client.query(
      `SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnkeyatts = 1 AND a.attname = 'key'`,
      [table],
    );
    if (unique.rows.length === 0) problems.push(`${table}.key is not its primary key`);
  }
  return problems;
}

/**
 * Counts the events table's rows by status.
 *
 * @example
 * ```ts
 * const { pending, failed } = await countEvents({ pool });
 * ```
 */
export async function countEvents(options: PostgresAdminOptions): Promise<EventCounts> {
  const t = prepare("countEvents", options);
  try {
    const result = await options.pool.query(
      `SELECT status, count(*)::int AS n FROM ${t.events} GROUP BY status`,
    );
    const counts: EventCounts = { pending: 0, done: 0, failed: 0 };
    for (const row of result.rows as Array<{ status: keyof EventCounts; n: number }>) {
      counts[row.status] = row.n;
    }
    return counts;
  } catch (error) {
    throw adminError("countEvents", error);
  }
}

/**
 * The inbox's backlog, as the worker's `instrumentation` gauges report it: pending events,
 * failed events and the age in seconds of the oldest pending one (by `received_at`, `0` when
 * none is pending).
 *
 * @example
 * ```ts
 * const { pending, failed, oldestPendingAgeSec } = await readBacklog({ pool });
 * ```
 */
export async function readBacklog(options: PostgresAdminOptions): Promise<MappaBacklog> {
  const t = prepare("readBacklog", options);
  try {
    const result = await options.pool.query(
      `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending,
              count(*) FILTER (WHERE status = 'failed')::int AS failed,
              COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(received_at) FILTER (WHERE status = 'pending')), 0)::double precision AS oldest
         FROM ${t.events}
        WHERE status IN ('pending', 'failed')`,
    );
    const row = (result.rows[0] ?? {}) as { pending?: number; failed?: number; oldest?: number };
    return {
      pending: Number(row.pending ?? 0),
      failed: Number(row.failed ?? 0),
      oldestPendingAgeSec: Math.max(0, Number(row.oldest ?? 0)),
    };
  } catch (error) {
    throw adminError("readBacklog", error);
  }
}

/**
 * Reads one stored event by its idempotency key (`event.idempotencyKey`). For a known event
 * (`report.completed`, `report.failed`, `matching.completed`, `matching.failed`) that is its job
 * outcome, `"~job:<type>:<jobId>"` (see `jobOutcomeKey` in `@mappa-webhooks/core`), not the
 * event id; for any other event it is the event id.
 *
 * @example
 * ```ts
 * import { jobOutcomeKey } from "@mappa-webhooks/core";
 *
 * const stored = await getEvent({ pool }, jobOutcomeKey("report.completed", "job_123"));
 * console.log(stored?.status, stored?.attempts);
 * ```
 */
export async function getEvent(
  options: PostgresAdminOptions,
  key: string,
): Promise<StoredEvent | undefined> {
  const t = prepare("getEvent", options);
  try {
    const result = await options.pool.query(
      `SELECT ${SELECT_COLUMNS} FROM ${t.events} WHERE key = $1`,
      [key],
    );
    const row = result.rows[0] as EventRow | undefined;
    return row === undefined ? undefined : toStoredEvent(row);
  } catch (error) {
    throw adminError("getEvent", error);
  }
}

/**
 * Options of {@link listFailed}.
 *
 * @example
 * ```ts
 * const options: ListFailedOptions = { pool, limit: 20 };
 * ```
 */
export interface ListFailedOptions extends PostgresAdminOptions {
  /** Most events returned, newest failure first. Default 100. */
  limit?: number;
}

/**
 * The events parked as failed (every attempt failed), newest first: what to look at before
 * {@link replayFailed}.
 *
 * @example
 * ```ts
 * for (const event of await listFailed({ pool })) {
 *   console.log(event.key, event.type, event.attempts, event.lastError);
 * }
 * ```
 */
export async function listFailed(options: ListFailedOptions): Promise<StoredEvent[]> {
  const t = prepare("listFailed", options);
  const limit = options.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1) {
    throw invalidOptions("listFailed", "`limit` must be a positive integer.");
  }
  try {
    const result = await options.pool.query(
      `SELECT ${SELECT_COLUMNS} FROM ${t.events} WHERE status = 'failed' ORDER BY updated_at DESC, key LIMIT $1`,
      [limit],
    );
    return (result.rows as EventRow[]).map(toStoredEvent);
  } catch (error) {
    throw adminError("listFailed", error);
  }
}

/**
 * Options of {@link replayFailed}.
 *
 * @example
 * ```ts
 * const options: ReplayOptions = { pool, keys: ["evt_123"] };
 * ```
 */
export interface ReplayOptions extends PostgresAdminOptions {
  /** Only these events (idempotency keys). Without it, every failed event is replayed. */
  keys?: readonly string[];
}

/**
 * What {@link replayFailed} did.
 *
 * @example
 * ```ts
 * const { replayed, notFailed }: ReplayResult = await replayFailed({ pool, keys });
 * ```
 */
export interface ReplayResult {
  /** Keys moved back to pending, attempts reset: a worker runs them next. */
  replayed: string[];
  /** Requested keys that are not parked as failed (unknown, pending or done): left alone. */
  notFailed: string[];
}

/**
 * Moves failed events back to pending with their attempts reset, and wakes the workers: use it
 * once the cause is fixed, also long after Mappa stopped retrying. Only failed events are
 * touched, so replaying never runs a handled event twice.
 *
 * @example
 * ```ts
 * const { replayed } = await replayFailed({ pool });
 * const one = await replayFailed({ pool, keys: ["evt_123"] });
 * ```
 */
export async function replayFailed(options: ReplayOptions): Promise<ReplayResult> {
  const t = prepare("replayFailed", options);
  const keys = options.keys;
  if (keys !== undefined && (!Array.isArray(keys) || keys.some((key) => typeof key !== "string"))) {
    throw invalidOptions("replayFailed", "`keys` must be an array of event keys.");
  }
  if (keys !== undefined && keys.length === 0) return { replayed: [], notFailed: [] };
  try {
    const filter = keys === undefined ? "" : "AND key = ANY($2::text[])";
    const values: unknown[] = [t.channel];
    if (keys !== undefined) values.push([...keys]);
    const result = await options.pool.query(
      `WITH replayed AS (
         UPDATE ${t.events}
            SET status = 'pending', attempts = 0, run_at = now(), last_error = NULL, updated_at = now()
          WHERE status = 'failed' ${filter}
         RETURNING key
       ), woken AS (
         SELECT pg_notify($1, '') FROM (SELECT 1 FROM replayed LIMIT 1) AS any_row
       )
       SELECT key, (SELECT count(*) FROM woken) AS woken FROM replayed`,
      values,
    );
    const replayed = (result.rows as Array<{ key: string }>).map((row) => row.key);
    const done = new Set(replayed);
    return { replayed, notFailed: (keys ?? []).filter((key) => !done.has(key)) };
  } catch (error) {
    throw adminError("replayFailed", error);
  }
}

/**
 * Options of {@link prune}.
 *
 * @example
 * ```ts
 * const options: PruneOptions = { pool, olderThanDays: 30 };
 * ```
 */
export interface PruneOptions extends PostgresAdminOptions {
  /** Delete done events whose handling finished more than this many days ago. */
  olderThanDays: number;
}

/**
 * What {@link prune} deleted.
 *
 * @example
 * ```ts
 * const { events, idempotencyKeys }: PruneResult = await prune({ pool, olderThanDays: 30 });
 * ```
 */
export interface PruneResult {
  /** Done events deleted. */
  events: number;
  /** Expired idempotency keys deleted (claims and completed marks past their time). */
  idempotencyKeys: number;
}

/**
 * Retention: deletes done events older than `olderThanDays` and expired keys of the idempotency
 * store, in batches (short locks). Pending and failed events are never deleted. Keep
 * `olderThanDays` well above Mappa's retry window (~36 minutes): a deleted event's late
 * re-delivery would be stored and handled again.
 *
 * @example
 * ```ts
 * // e.g. daily from a cron job
 * const { events } = await prune({ pool, olderThanDays: 30 });
 * ```
 */
export async function prune(options: PruneOptions): Promise<PruneResult> {
  const t = prepare("prune", options);
  const days = options.olderThanDays;
  if (!(typeof days === "number" && Number.isFinite(days) && days >= 0)) {
    throw invalidOptions("prune", "`olderThanDays` must be a number >= 0.");
  }
  const deleteInBatches = async (sql: string, values: unknown[]) => {
    let total = 0;
    for (let batch = 0; batch < MAX_PRUNE_BATCHES; batch++) {
      const result = await options.pool.query(sql, values);
      const deleted = result.rowCount ?? 0;
      total += deleted;
      if (deleted < PRUNE_BATCH) break;
    }
    return total;
  };
  try {
    const events = await deleteInBatches(
      `DELETE FROM ${t.events} WHERE key IN (
         SELECT key FROM ${t.events}
          WHERE status = 'done' AND done_at < now() - $1::double precision * interval '1 day'
          LIMIT ${PRUNE_BATCH})`,
      [days],
    );
    const idempotencyKeys = await deleteInBatches(
      `DELETE FROM ${t.idempotency} WHERE key IN (
         SELECT key FROM ${t.idempotency} WHERE expires_at < clock_timestamp() LIMIT ${PRUNE_BATCH})`,
      [],
    );
    return { events, idempotencyKeys };
  } catch (error) {
    throw adminError("prune", error);
  }
}
