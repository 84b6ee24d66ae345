import {
  createLogWriter,
  type MappaEvent,
  type MappaHandlerMap,
  type MappaInstrumentation,
  type MappaLogger,
  type MappaLogLevel,
  type MappaProcessStart,
  type MappaTraceCarrier,
  type MappaUnknownEvent,
  type ProcessTrace,
  parseEvent,
  startProcessTrace,
} from "@mappa-webhooks/core";
import { readBacklog } from "./admin.js";
import {
  checkDuration,
  checkPool,
  checkPositive,
  connectWithin,
  errorMessage,
  guardClient,
  hintFor,
  invalidOptions,
  isConnectionError,
  MAX_TIMEOUT_MS,
  type PgClientLike,
  type PgNotification,
  type PgPoolLike,
  type PgQueryResult,
  type PoolClientOf,
  pgTimeoutMs,
  postgresError,
  sqlState,
  statementTimeoutFor,
  storableText,
  withTimeout,
} from "./pg.js";
import { type PostgresTablesOptions, quoteIdentifier, resolveTables } from "./schema.js";
import { handlerFor } from "./transaction.js";

/**
 * Wait before attempt `attempt + 1`, after `attempt` failed attempts (1, 2, ...).
 *
 * @example
 * ```ts
 * const everyMinute: InboxBackoff = () => 60_000;
 * ```
 */
export type InboxBackoff = (attempt: number) => number;

/**
 * What `onError` of a worker receives besides the error.
 *
 * @example
 * ```ts
 * onError: (error, info: InboxWorkerErrorInfo) => {
 *   if (info.outcome === "failed") alert(`${info.key} parked: ${error.message}`);
 * },
 * ```
 */
export interface InboxWorkerErrorInfo {
  /** The event's key, when the error concerns one event. */
  key?: string;
  /** The parsed event, when it could be parsed. */
  event?: MappaEvent;
  /** Attempts made, this one included. */
  attempts?: number;
  /** `"retry"`: it will be tried again; `"failed"`: parked as failed; `"worker"`: not about one event (e.g. the database went away). */
  outcome: "retry" | "failed" | "worker";
}

/**
 * Options of {@link createInboxWorker}.
 *
 * @example
 * ```ts
 * const options: InboxWorkerOptions<pg.Pool> = { pool, concurrency: 4, maxAttempts: 20 };
 * ```
 */
export interface InboxWorkerOptions<TPool extends PgPoolLike = PgPoolLike>
  extends PostgresTablesOptions {
  /** A `pg` Pool; give it at least `concurrency + 1` connections (one listens for NOTIFY). */
  pool: TPool;
  /**
   * Handlers by event type, narrowed as in the receiver; the second argument is the client of
   * the event's transaction. What they write commits together with the event's done mark.
   */
  on?: MappaHandlerMap<PoolClientOf<TPool>>;
  /** Event types this package does not know; without it they are marked done unhandled. */
  onUnknown?: (event: MappaUnknownEvent, client: PoolClientOf<TPool>) => unknown;
  /** Events handled at once by this worker (one connection each). Default 1. */
  concurrency?: number;
  /**
   * Events each slot takes and commits together (each handler in a savepoint of its own, so a
   * failure still affects only its event). More than 1 saves commits (WAL flushes) when
   * handlers are quick; a crash then rolls the whole batch back, to be taken again. Only
   * first attempts are batched: a retried event always runs alone, so an event that crashes
   * its worker never takes its batch-mates down with it twice. Default 1.
   */
  batchSize?: number;
  /** Attempts before an event is parked as failed. Default 10. */
  maxAttempts?: number;
  /**
   * Wait before the next attempt, by failed attempts so far. Default exponential: 1 s, 2 s,
   * 4 s, ... capped at 15 min (10 attempts span about 17 minutes).
   */
  backoff?: InboxBackoff;
  /** How often an idle worker looks for due events without a NOTIFY. Default 1000 ms. */
  pollIntervalMs?: number;
  /** Wake up on `LISTEN`/`NOTIFY` (one extra connection). Default `true`. */
  listen?: boolean;
  /**
   * A worker whose transaction sits idle this long (a frozen or cut-off process) is ended by
   * Postgres, which releases its event to another worker. Handlers that work outside the
   * database for longer need a larger value. Default 300 000 ms (5 min); at most 2^31 - 1.
   */
  lockTimeoutMs?: number;
  /**
   * Longest run of one handler. Past it the attempt fails with `handler_timeout`: the
   * transaction is rolled back, its connection (and the backend, should it still run the
   * handler's statement) ended, the slot freed, `onError` told, and the event retried after the
   * backoff or parked after `maxAttempts`. Each statement of the event's transaction is also
   * bounded, a little later, by `statement_timeout` (should ending the backend fail). Default 300 000 ms (5 min); at most 2^31 - 1.
   */
  handlerTimeoutMs?: number;
  /** Every failure: handler errors (with what happens next) and database errors. Never throws back. */
  onError?: (error: Error, info: InboxWorkerErrorInfo) => void;
  /**
   * Traces and metrics (e.g. `openTelemetry()` from @mappa-webhooks/opentelemetry): one span
   * per attempt (handoff `"postgres-inbox"`, linked to the delivery that stored the event when
   * its row holds a trace context), a child span per handler, and backlog gauges read from the
   * events table: pending events, failed events and the age of the oldest pending one (by
   * `received_at`).
   */
  instrumentation?: MappaInstrumentation;
  /**
   * Where the worker logs: one line at `error` per failed attempt (the event, what happens next
   * and what to do, never its payload), database trouble at `warn`, and one line per handled
   * event at `info`. Anything with `debug`, `info`, `warn` and `error` (console, pino, winston).
   * Default `console`; `false` logs nothing.
   */
  logger?: MappaLogger | false;
  /** The lowest level logged. Default `"warn"`: failures only. */
  logLevel?: MappaLogLevel;
}

/**
 * Counts since the worker started.
 *
 * @example
 * ```ts
 * const { done, retried, failed }: InboxWorkerStats = worker.stats;
 * ```
 */
export interface InboxWorkerStats {
  /** Events handled and committed. */
  done: number;
  /** Failed attempts that will be retried. */
  retried: number;
  /** Events parked as failed. */
  failed: number;
}

/**
 * Returned by {@link createInboxWorker}.
 *
 * @example
 * ```ts
 * const worker: InboxWorker = createInboxWorker({ pool, on });
 * await worker.ready;
 * process.on("SIGTERM", () => worker.close());
 * ```
 */
export interface InboxWorker {
  /** Resolves once the worker listens for NOTIFY (or at once with `listen: false`). */
  readonly ready: Promise<void>;
  readonly stats: Readonly<InboxWorkerStats>;
  /**
   * Stops taking events, waits for the ones running (each at most `handlerTimeoutMs`), gives
   * the worker's connections back. Resolves within a bounded time; it does not end your pool:
   * call `pool.end()` after it.
   */
  close(): Promise<void>;
}

/**
 * Exponential backoff: `baseMs` doubled per failed attempt, at most `maxMs`.
 *
 * @example
 * ```ts
 * createInboxWorker({ pool, on, backoff: exponentialBackoff(5000, 60 * 60_000) }); // 5 s, 10 s, ... 1 h
 * ```
 */
export function exponentialBackoff(baseMs = 1000, maxMs = 15 * 60 * 1000): InboxBackoff {
  return (attempt) => Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

const DEFAULT_MAX_ATTEMPTS = 10;
const DEFAULT_POLL_MS = 1000;
const DEFAULT_LOCK_TIMEOUT_MS = 300_000;
const DEFAULT_HANDLER_TIMEOUT_MS = 300_000;
/**
 * How long a taken event stays out of other workers' reach before its row is locked. The row
 * lock (held until the outcome commits) keeps others off while the handler runs; this only
 * covers the moment between the take and the lock, and it is how long an event waits after the
 * worker that took it died.
 */
const TAKE_LEASE_MS = 2000;
/** Longest wait for one of the worker's own statements (a frozen server or a cut network). */
const QUERY_TIMEOUT_MS = 60_000;

interface TakenRow {
  key: string;
  payload: unknown;
  /** The trace context of the delivery that stored the event, when it was traced. */
  trace_context?: MappaTraceCarrier | null;
  /** Attempts counted so far, this one included. */
  attempts: number;
  /** `failed`: parked at the take, its earlier attempts never recorded an outcome. */
  status: "pending" | "failed";
  last_error: string | null;
  /** `last_error` before this take: says whether the previous attempt ended without an outcome. */
  previous_error: string | null;
}

/** The outcome of one event, once known; applied to the stats and reported after the commit. */
interface Outcome {
  row: TakenRow;
  kind: "done" | "retry" | "failed" | "released";
  error?: Error;
  event?: MappaEvent;
  delayMs?: number;
  message?: string;
}

/** A statement of the event's transaction failed, or the handler left it unusable. */
class BrokenTransaction extends Error {}

const LOG_PREFIX = "@mappa-webhooks/postgres: ";

/** Calls `fn`; an instrumentation that throws never changes what the worker does. */
function guarded<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function codeOf(error: Error): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && code !== "" ? code : error.name;
}

/** The message without the package prefix, ending with a full stop. */
function bare(error: Error): string {
  const text = error.message.startsWith(LOG_PREFIX)
    ? error.message.slice(LOG_PREFIX.length)
    : error.message;
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** Which event a log line is about: its type and key when it parsed, else its key. */
function eventText(key: string, event: MappaEvent | undefined): string {
  return event === undefined ? `event ${key}` : `event ${key} (${event.type})`;
}

const ABORTED = "25P02";
/** A string literal any `standard_conforming_strings` reads the same way. */
const literal = (text: string) => `E'${text.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;

/** The `last_error` a take leaves behind, until the attempt records its outcome. */
const SUSPECT = /^attempt \d+ recorded no outcome: /;

/**
 * A worker for the inbox: takes due events with `FOR UPDATE SKIP LOCKED` (any number of
 * workers share the table, none takes an event another holds), woken by `LISTEN`/`NOTIFY` with
 * polling as the fallback. Each attempt is counted when the event is taken, before its handler
 * runs; then the event runs in one transaction: the handler gets its client, and its writes
 * commit together with the done mark. A handler that throws, times out (`handlerTimeoutMs`)
 * or leaves its transaction aborted rolls its writes back; the event is retried after the
 * backoff, and parked as failed after `maxAttempts` (list and replay them with
 * {@link listFailed} / {@link replayFailed} or the CLI). A worker that dies mid-event (a crash,
 * a kill, `process.exit` in a handler) loses only that attempt: Postgres rolls its transaction
 * back, another worker takes the event a few seconds later, and an event that keeps killing
 * its worker is parked after `maxAttempts` instead of blocking the others.
 *
 * @example
 * ```ts
 * import pg from "pg";
 * import { createInboxWorker } from "@mappa-webhooks/postgres";
 *
 * const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 5 });
 * pool.on("error", (error) => console.error(`[postgres] ${error.message}`));
 * const worker = createInboxWorker({
 *   pool,
 *   concurrency: 4,
 *   on: {
 *     "report.completed": async (event, client) => {
 *       await client.query("INSERT INTO reports (id) VALUES ($1)", [event.data.reportId]);
 *     },
 *   },
 * });
 * process.on("SIGTERM", async () => {
 *   await worker.close();
 *   await pool.end();
 * });
 * ```
 */
export function createInboxWorker<TPool extends PgPoolLike>(
  options: InboxWorkerOptions<TPool>,
): InboxWorker {
  type TClient = PgClientLike;
  const api = "createInboxWorker";
  if (options === null || typeof options !== "object")
    throw invalidOptions(api, "needs `{ pool }`.");
  checkPool(api, options.pool);
  for (const name of ["concurrency", "batchSize", "maxAttempts"] as const) {
    checkPositive(api, name, options[name]);
  }
  for (const name of ["pollIntervalMs", "lockTimeoutMs", "handlerTimeoutMs"] as const) {
    checkDuration(api, name, options[name]);
  }
  const concurrency = Math.floor(options.concurrency ?? 1);
  const maxAttempts = Math.floor(options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
  const batchSize = Math.floor(options.batchSize ?? 1);
  if (concurrency < 1 || maxAttempts < 1 || batchSize < 1) {
    throw invalidOptions(api, "`concurrency`, `batchSize` and `maxAttempts` must be at least 1.");
  }
  if (options.backoff !== undefined && typeof options.backoff !== "function") {
    throw invalidOptions(api, "`backoff` must be a function of the attempt number returning ms.");
  }
  const on = (options.on ?? {}) as MappaHandlerMap<TClient>;
  const onUnknown = options.onUnknown as
    | ((event: MappaUnknownEvent, client: TClient) => unknown)
    | undefined;
  for (const [type, handler] of Object.entries(on)) {
    if (typeof handler !== "function") {
      throw invalidOptions(api, `the handler for "${type}" in \`on\` is not a function.`);
    }
  }
  const pool = options.pool as PgPoolLike;
  const t = resolveTables(options);
  const backoff = options.backoff ?? exponentialBackoff();
  const pollMs = options.pollIntervalMs ?? DEFAULT_POLL_MS;
  const lockTimeoutMs = pgTimeoutMs(options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
  const handlerTimeoutMs = pgTimeoutMs(options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS);
  const stats: InboxWorkerStats = { done: 0, retried: 0, failed: 0 };
  const instrumentation = options.instrumentation;
  if (
    instrumentation !== undefined &&
    (instrumentation === null || typeof instrumentation !== "object")
  ) {
    throw invalidOptions(
      api,
      "`instrumentation` must be an object such as `openTelemetry()` from @mappa-webhooks/opentelemetry.",
    );
  }
  let log: MappaLogger;
  try {
    log = createLogWriter({ logger: options.logger, logLevel: options.logLevel });
  } catch (error) {
    throw invalidOptions(api, errorMessage(error).replace(/^@mappa-webhooks: /, ""));
  }
  // Each taken row's attempt, from its take (or its parse) to its recorded outcome.
  const traces = new Map<TakenRow, ProcessTrace>();
  const startTrace = (row: TakenRow, event: MappaEvent | undefined): ProcessTrace | undefined => {
    const start: MappaProcessStart = {
      handoff: "postgres-inbox",
      attempt: row.attempts,
      startedAt: Date.now(),
    };
    if (event !== undefined) start.event = event;
    if (row.trace_context != null) start.carrier = row.trace_context;
    const trace = startProcessTrace(instrumentation, start);
    if (trace !== undefined) traces.set(row, trace);
    return trace;
  };

  // "Still pending", for the statements that find a row by its key (the CHECK allows only
  // pending, done and failed). Not written `status = 'pending'`: that would let the planner
  // pick the partial pending index over the primary key when the statistics say few events
  // are pending (an ANALYZE while the inbox was nearly empty), and each lookup would then read
  // the whole backlog.
  const STILL_PENDING = "status NOT IN ('done', 'failed')";
  const abandoned = `'attempt ' || (e.attempts + 1) || ' recorded no outcome: the worker stopped (a crash, a kill, process.exit in the handler) or lost its database connection while the handler ran'`;
  const SQL = {
    // The take commits at once (no WAL flush wait: a worker crash never loses it), so the
    // attempt counts even if the handler then kills the process. A retried event is taken
    // alone: if it is the one that crashes its worker, it takes no other event down with it.
    beginTake: "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL synchronous_commit = off",
    // `(SELECT clock_timestamp())` is computed once, so it bounds the scan of the pending index
    // (an Index Cond): with many events waiting for a retry and none due, a take still reads
    // only the head of the index instead of every waiting event.
    take: `WITH candidates AS (
             SELECT key, attempts, run_at, last_error FROM ${t.events}
              WHERE status = 'pending' AND run_at <= (SELECT clock_timestamp())
              ORDER BY run_at
              LIMIT $1
              FOR UPDATE SKIP LOCKED
           ), ranked AS (
             SELECT key, attempts, last_error, row_number() OVER (ORDER BY run_at, key) AS n
               FROM candidates
           ), chosen AS (
             SELECT key, last_error AS previous_error FROM ranked
              WHERE n = 1 OR (attempts = 0 AND (SELECT attempts FROM ranked WHERE n = 1) = 0)
           )
           UPDATE ${t.events} AS e
              SET attempts = CASE WHEN e.attempts >= $2 THEN e.attempts ELSE e.attempts + 1 END,
                  status = CASE WHEN e.attempts >= $2 THEN 'failed' ELSE 'pending' END,
                  last_error = CASE WHEN e.attempts >= $2 THEN e.last_error ELSE ${abandoned} END,
                  run_at = clock_timestamp() + $3::double precision * interval '1 millisecond',
                  updated_at = clock_timestamp()
             FROM chosen
            WHERE e.key = chosen.key
        RETURNING e.key, e.payload, e.trace_context, e.attempts, e.status, e.last_error, chosen.previous_error`,
    begin: `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL idle_in_transaction_session_timeout = ${lockTimeoutMs}; SET LOCAL statement_timeout = ${statementTimeoutFor(handlerTimeoutMs)}`,
    // Still ours: pending with the attempt we counted.
    // Waits rather than skips: a concurrent take may hold a row's lock for an instant.
    lock: (keys: string[]) => `SELECT key, attempts FROM ${t.events}
            WHERE key IN (${keys.map(literal).join(", ")}) AND ${STILL_PENDING}
            ORDER BY key FOR UPDATE`,
    done: `UPDATE ${t.events}
              SET status = 'done', last_error = NULL,
                  done_at = clock_timestamp(), updated_at = clock_timestamp()
            WHERE key = $1`,
    retry: `UPDATE ${t.events}
               SET last_error = $2, updated_at = clock_timestamp(),
                   run_at = clock_timestamp() + $3::double precision * interval '1 millisecond'
             WHERE key = $1`,
    fail: `UPDATE ${t.events}
              SET status = 'failed', last_error = $2, updated_at = clock_timestamp()
            WHERE key = $1`,
    // Outside the event's transaction (it was lost): only while the row is still as we took it.
    retryAlone: `UPDATE ${t.events}
                    SET last_error = $3, updated_at = clock_timestamp(),
                        run_at = clock_timestamp() + $4::double precision * interval '1 millisecond'
                  WHERE key = $1 AND ${STILL_PENDING} AND attempts = $2`,
    failAlone: `UPDATE ${t.events}
                   SET status = 'failed', last_error = $3, updated_at = clock_timestamp()
                 WHERE key = $1 AND ${STILL_PENDING} AND attempts = $2`,
    // An event taken while another runs alone in this worker: back as it was, due a little later.
    giveBack: `UPDATE ${t.events}
                  SET attempts = attempts - 1, last_error = $2, updated_at = clock_timestamp(),
                      run_at = clock_timestamp() + $3::double precision * interval '1 millisecond'
                WHERE key = $1`,
    // A batch-mate whose handler ran in a transaction another event broke: due again at once,
    // its attempt given back.
    releaseAlone: `UPDATE ${t.events}
                      SET attempts = attempts - 1, last_error = NULL, updated_at = clock_timestamp(),
                          run_at = clock_timestamp()
                    WHERE key = $1 AND ${STILL_PENDING} AND attempts = $2`,
  };

  const report = (error: unknown, info: InboxWorkerErrorInfo) => {
    if (info.outcome === "worker") {
      log.warn(`${LOG_PREFIX}inbox worker trouble: ${errorMessage(error)}`);
    }
    if (options.onError === undefined) return;
    try {
      options.onError(error instanceof Error ? error : new Error(String(error)), info);
    } catch {
      // onError must never stop the worker.
    }
  };

  let closing = false;
  // Wake-ups: a counter so a NOTIFY that arrives while a slot is busy is not missed.
  let generation = 0;
  const sleepers = new Set<() => void>();
  const wakeAll = () => {
    generation++;
    for (const wake of [...sleepers]) wake();
  };
  const sleep = (ms: number, seen: number) =>
    new Promise<void>((resolve) => {
      if (closing || generation !== seen) return resolve();
      const done = () => {
        clearTimeout(timer);
        sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      sleepers.add(done);
    });

  // An event whose previous attempt ended without an outcome may be one that kills its process:
  // it runs alone in this worker (the other slots finish what they run and wait), so a crash it
  // causes again takes no other event's attempt with it.
  let running = 0;
  let exclusive = false;
  const gateWaiters: Array<() => void> = [];
  const notifyGate = () => {
    for (const waiter of gateWaiters.splice(0)) waiter();
  };
  const untilGate = (ready: () => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (ready()) resolve();
        else gateWaiters.push(check);
      };
      check();
    });
  const suspect = (row: TakenRow) => SUSPECT.test(row.previous_error ?? "");

  /** Decides what a failed attempt leads to: another attempt after the backoff, or parked. */
  const failedAttempt = (row: TakenRow, error: Error, event?: MappaEvent): Outcome => {
    const message = storableText(errorMessage(error));
    if (row.attempts >= maxAttempts) {
      return { row, kind: "failed", error, message, ...(event ? { event } : {}) };
    }
    let delayMs = 0;
    try {
      delayMs = Math.min(MAX_TIMEOUT_MS, Math.max(0, Number(backoff(row.attempts)) || 0));
    } catch {
      // A throwing backoff retries at once rather than stopping the worker.
    }
    return { row, kind: "retry", error, message, delayMs, ...(event ? { event } : {}) };
  };

  const apply = (outcome: Outcome) => {
    const { row, kind, error, event } = outcome;
    if (kind === "done") stats.done++;
    else if (kind === "retry") stats.retried++;
    else if (kind === "failed") stats.failed++;
    if (kind === "retry" || kind === "failed") {
      report(error, {
        key: row.key,
        ...(event ? { event } : {}),
        attempts: row.attempts,
        outcome: kind,
      });
    }
    const thrown = error instanceof Error ? error : new Error(String(error));
    // A handler's own error is told as `handler_failed`, its message kept.
    const failure =
      typeof (thrown as { code?: unknown }).code === "string"
        ? thrown
        : event === undefined
          ? postgresError(
              "invalid_event",
              `event ${row.key} is not a Mappa event: ${errorMessage(thrown)}`,
              { cause: thrown },
            )
          : postgresError(
              "handler_failed",
              `the handler of event ${row.key} threw: ${errorMessage(thrown)}`,
              { cause: thrown },
            );
    const trace = traces.get(row);
    traces.delete(row);
    if (kind === "done") {
      trace?.end("handled");
      log.info(
        `${LOG_PREFIX}${eventText(row.key, event)} handled, attempt ${row.attempts} of ${maxAttempts}`,
      );
    } else if (kind === "retry") {
      trace?.end("failed", failure, true);
      log.error(
        `${LOG_PREFIX}${eventText(row.key, event)} attempt ${row.attempts} of ${maxAttempts} failed, ${codeOf(failure)}: ${bare(failure)} Retried in ${outcome.delayMs ?? 0} ms; fix the handler if it keeps failing.`,
      );
    } else if (kind === "failed") {
      trace?.end("failed", failure, false);
      log.error(
        `${LOG_PREFIX}${eventText(row.key, event)} attempt ${row.attempts} of ${maxAttempts} failed, ${codeOf(failure)}: ${bare(failure)} It is parked as failed: fix the cause, then replay it with replayFailed() or \`mappa-webhooks-postgres replay ${row.key}\`.`,
      );
    } else {
      // A batch-mate cut off by another event's failure: its attempt is given back.
      trace?.end(
        "failed",
        new Error(
          `the transaction of event ${row.key} was lost with a batch-mate's failure; its attempt is given back and it is taken again`,
        ),
        true,
      );
    }
  };
  /** Attempts whose outcome was never recorded (the database failed): taken again after their lease. */
  const endUnrecorded = (rows: TakenRow[], error: unknown) => {
    for (const row of rows) {
      const trace = traces.get(row);
      if (trace === undefined) continue;
      traces.delete(row);
      trace.end("failed", error instanceof Error ? error : new Error(String(error)), true);
    }
  };

  /** Records an outcome in the open transaction. */
  const recordIn = async (client: TClient, outcome: Outcome) => {
    const { row, kind } = outcome;
    if (kind === "done") await client.query(SQL.done, [row.key]);
    else if (kind === "retry") {
      await client.query(SQL.retry, [row.key, outcome.message, outcome.delayMs]);
    } else if (kind === "failed") await client.query(SQL.fail, [row.key, outcome.message]);
  };

  /**
   * Records outcomes on a connection of their own, after the event's transaction was lost.
   * Only rows still as this worker took them change; nothing is recorded twice.
   */
  const recordAlone = async (outcomes: Outcome[]) => {
    for (const outcome of outcomes) {
      const { row, kind } = outcome;
      const values: unknown[] = [row.key, row.attempts];
      let sql = SQL.releaseAlone;
      if (kind === "retry") {
        sql = SQL.retryAlone;
        values.push(outcome.message, outcome.delayMs);
      } else if (kind === "failed") {
        sql = SQL.failAlone;
        values.push(outcome.message);
      }
      try {
        const result = await withTimeout(
          pool.query(sql, values),
          QUERY_TIMEOUT_MS,
          () => new Error(`no answer within ${QUERY_TIMEOUT_MS} ms`),
        );
        if ((result.rowCount ?? 0) > 0) apply(outcome);
      } catch (error) {
        // The attempt is counted already: the event comes back after its lease, and is
        // parked after `maxAttempts` if this keeps happening.
        report(
          postgresError(
            "idempotency_store_failed",
            `the worker could not record the outcome of event ${row.key} (attempt ${row.attempts}): ${errorMessage(error)}.${hintFor(error)} The attempt is counted; the event is taken again in ${TAKE_LEASE_MS} ms.`,
            { cause: error },
          ),
          { key: row.key, attempts: row.attempts, outcome: "worker" },
        );
      }
    }
  };

  /** Ends a backend that may still be running a handler's statement, then its connection. */
  const destroy = async (client: TClient, reason: Error) => {
    const pid = (client as { processID?: unknown }).processID;
    if (typeof pid === "number") {
      await withTimeout(
        pool.query("SELECT pg_terminate_backend($1)", [pid]),
        QUERY_TIMEOUT_MS,
        () => new Error("no answer"),
      ).catch(() => {});
    }
    client.release(reason);
  };

  type Settled = { kind: "ok" } | { kind: "threw"; error: unknown } | { kind: "timeout" };

  /** Runs the handler, at most `handlerTimeoutMs`. */
  const runHandler = async (
    event: MappaEvent,
    client: TClient,
    trace: ProcessTrace | undefined,
  ): Promise<Settled> => {
    const handler = handlerFor(on, onUnknown, event);
    if (handler === undefined) return { kind: "ok" };
    const step = trace?.step(event.type);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let settled: Settled;
    try {
      settled = await Promise.race([
        (async (): Promise<Settled> => {
          await (step === undefined
            ? handler(event, client)
            : step.run(() => handler(event, client)));
          return { kind: "ok" };
        })().catch((error: unknown): Settled => ({ kind: "threw", error })),
        new Promise<Settled>((resolve) => {
          timer = setTimeout(() => resolve({ kind: "timeout" }), handlerTimeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    if (settled.kind === "threw") step?.end(settled.error);
    else if (settled.kind === "timeout") {
      step?.end(
        postgresError(
          "handler_timeout",
          `the handler did not settle within ${handlerTimeoutMs} ms`,
        ),
      );
    } else step?.end();
    return settled;
  };

  /**
   * Handles one taken row inside the open transaction. Resolves its outcome (recorded in the
   * transaction), or rejects with {@link BrokenTransaction} when the transaction can no longer
   * be trusted (the outcome to record elsewhere is attached).
   */
  const handleRow = async (
    client: TClient,
    handlerClient: TClient,
    row: TakenRow,
  ): Promise<Outcome> => {
    let event: MappaEvent;
    try {
      event = parseEvent(JSON.stringify(row.payload));
    } catch (error) {
      startTrace(row, undefined);
      // Retrying cannot help an event that does not parse: park it at once.
      const message = storableText(`not a Mappa event: ${errorMessage(error)}`);
      const outcome: Outcome = { row, kind: "failed", error: error as Error, message };
      await client.query(SQL.fail, [row.key, message]);
      return outcome;
    }
    const trace = startTrace(row, event);
    await client.query("SAVEPOINT mappa_handler");
    const settled = await runHandler(event, handlerClient, trace);
    if (settled.kind === "timeout") {
      const error = postgresError(
        "handler_timeout",
        `the handler of event ${row.key} did not settle within handlerTimeoutMs (${handlerTimeoutMs} ms), attempt ${row.attempts} of ${maxAttempts}; its transaction was rolled back and its connection closed. Make the handler finish sooner, or raise \`handlerTimeoutMs\`.`,
      );
      throw Object.assign(new BrokenTransaction(error.message), {
        outcome: failedAttempt(row, error, event),
        timedOut: true,
      });
    }
    if (settled.kind === "ok") {
      try {
        // Fails when the handler left the transaction aborted, ended it, or broke the connection.
        await client.query("RELEASE SAVEPOINT mappa_handler");
      } catch (error) {
        if (sqlState(error) !== ABORTED) {
          const cause = handlerBroke(row, error);
          throw Object.assign(new BrokenTransaction(cause.message), {
            outcome: failedAttempt(row, cause, event),
          });
        }
        const aborted = postgresError(
          "handler_failed",
          `the handler of event ${row.key} returned normally, but a statement of its transaction had failed, which aborted the transaction (SQLSTATE 25P02); its writes are rolled back and the attempt counts as failed. Let database errors propagate out of the handler, or use a SAVEPOINT around statements that may fail.`,
          { cause: error },
        );
        return rollbackAndRecord(client, failedAttempt(row, aborted, event));
      }
      const outcome: Outcome = { row, kind: "done", event };
      await client.query(SQL.done, [row.key]);
      return outcome;
    }
    const error = settled.error instanceof Error ? settled.error : new Error(String(settled.error));
    return rollbackAndRecord(client, failedAttempt(row, error, event));
  };

  const handlerBroke = (row: TakenRow, error: unknown) =>
    isConnectionError(error)
      ? postgresError(
          "idempotency_store_failed",
          `the database connection of event ${row.key} failed during attempt ${row.attempts}: ${errorMessage(error)}. The handler's writes are rolled back; the event is retried.`,
          { cause: error },
        )
      : postgresError(
          "handler_failed",
          `the handler of event ${row.key} left its transaction unusable (${errorMessage(error)}): never run COMMIT, ROLLBACK or RELEASE on the client you are given. Its writes are rolled back and the attempt counts as failed.`,
          { cause: error },
        );

  /** The handler's writes go; the row lock stays, so the failure is recorded before anyone sees the event again. */
  const rollbackAndRecord = async (client: TClient, outcome: Outcome): Promise<Outcome> => {
    try {
      await client.query("ROLLBACK TO SAVEPOINT mappa_handler; RELEASE SAVEPOINT mappa_handler");
      await recordIn(client, outcome);
    } catch (error) {
      // The transaction is not ours any more (the handler ended it, or the connection broke):
      // the handler's failure is recorded on a connection of its own.
      throw Object.assign(new BrokenTransaction(handlerBroke(outcome.row, error).message), {
        outcome,
      });
    }
    return outcome;
  };

  /** Takes due events (their attempt counted) and handles them in one transaction; false when none was due. */
  const processBatch = async (): Promise<boolean> => {
    const client = await connectWithin(
      pool,
      QUERY_TIMEOUT_MS,
      () =>
        new Error(`no connection from the pool within ${QUERY_TIMEOUT_MS} ms (is it exhausted?)`),
    );
    guardClient(client);
    let broken: Error | undefined;
    const onClientError = (error: Error) => {
      broken = error;
    };
    client.on?.("error", onClientError);
    let released = false;
    const release = (error?: Error) => {
      if (released) return;
      released = true;
      client.removeListener?.("error", onClientError);
      client.release(broken ?? error);
    };
    const q = (sql: string, values?: unknown[]) =>
      withTimeout(
        client.query(sql, values),
        QUERY_TIMEOUT_MS,
        () => new Error(`Postgres did not answer within ${QUERY_TIMEOUT_MS} ms`),
      );
    // The worker's own statements are bounded; the handler gets the client itself.
    const own = { query: q, release: () => {} } as TClient;
    let taken: TakenRow[];
    try {
      await q(SQL.beginTake);
      const result = await q(SQL.take, [batchSize, maxAttempts, TAKE_LEASE_MS]);
      taken = result.rows as TakenRow[];
      if (taken.every((row) => row.status !== "pending")) await q("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK").catch(() => {});
      release(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
    if (taken.length === 0) {
      release();
      return false;
    }
    // Parked at the take: their earlier attempts all ended without an outcome.
    for (const row of taken.filter((row) => row.status === "failed")) {
      startTrace(row, undefined);
      apply({
        row,
        kind: "failed",
        error: postgresError(
          "handler_failed",
          `event ${row.key} was parked as failed after ${row.attempts} attempts that recorded no outcome (the last: ${row.last_error ?? "unknown"}). Fix the handler, then replay it.`,
        ),
      });
    }
    const rows = taken.filter((row) => row.status === "pending");
    if (rows.length === 0) {
      release();
      return true;
    }
    const outcomes: Outcome[] = [];
    let index = 0;
    try {
      // The take's commit, the event transaction's begin and its row locks in one round trip:
      // no other worker can come between them, however slow this process is.
      const answers = await q(`COMMIT; ${SQL.begin}; ${SQL.lock(rows.map((row) => row.key))}`);
      const locked = (Array.isArray(answers) ? answers.at(-1) : answers) as PgQueryResult;
      const ours = new Map(
        (locked.rows as Array<{ key: string; attempts: number }>).map((r) => [r.key, r.attempts]),
      );
      const alone = rows.length === 1 && suspect(rows[0] as TakenRow);
      if (alone && exclusive) {
        // Another event runs alone here: waiting would put this one at risk too. Give it back
        // as it was, for later (or for another worker).
        const row = rows[0] as TakenRow;
        await q(SQL.giveBack, [row.key, row.previous_error, TAKE_LEASE_MS]);
        await q("COMMIT");
        release();
        return true;
      }
      if (alone) {
        // The row is locked (no other worker can take it); wait for this worker's other events.
        exclusive = true;
        running--;
        notifyGate();
        await untilGate(() => running === 0);
      }
      try {
        for (; index < rows.length; index++) {
          const row = rows[index] as TakenRow;
          // Another worker took it meanwhile (our take's lease ran out): it is theirs now.
          if (ours.get(row.key) !== row.attempts) continue;
          outcomes.push(await handleRow(own, client, row));
        }
        await q("COMMIT");
      } finally {
        if (alone) {
          exclusive = false;
          running++;
          notifyGate();
        }
      }
    } catch (error) {
      // The transaction is lost: nothing of it committed. Record what is known on a connection
      // of its own; give the batch-mates their attempt back.
      const current = (error as { outcome?: Outcome }).outcome;
      const failure = error instanceof Error ? error : new Error(String(error));
      if ((error as { timedOut?: boolean }).timedOut === true || broken !== undefined) {
        released = true;
        client.removeListener?.("error", onClientError);
        await destroy(client, broken ?? failure);
      } else {
        await client.query("ROLLBACK").catch(() => {});
        release(failure);
      }
      // The failing event's attempt counts; its batch-mates (cut off by it) get theirs back.
      // Without a culprit (the connection or the commit failed) every attempt counts.
      const lost: Outcome[] = rows.map((row): Outcome => {
        if (current === undefined) return failedAttempt(row, failure);
        return row === current.row ? current : { row, kind: "released" };
      });
      if (current === undefined) {
        report(
          postgresError(
            "idempotency_store_failed",
            `the inbox worker lost the transaction of ${rows.length} event${rows.length === 1 ? "" : "s"}: ${errorMessage(error)}.${hintFor(error)} Their handlers' writes are rolled back; they are taken again.`,
            { cause: error },
          ),
          { outcome: "worker" },
        );
      }
      await recordAlone(lost);
      endUnrecorded(rows, failure);
      return true;
    }
    release();
    // Counted and reported once the outcomes are durable.
    for (const outcome of outcomes) apply(outcome);
    return true;
  };

  const slot = async () => {
    let errorsInARow = 0;
    // Bounded by `closing`: each turn either handles an event or sleeps.
    while (!closing) {
      const seen = generation;
      let took = false;
      try {
        while (exclusive && !closing) await untilGate(() => !exclusive || closing);
        running++;
        try {
          took = await processBatch();
        } finally {
          running--;
          notifyGate();
        }
        errorsInARow = 0;
      } catch (error) {
        errorsInARow++;
        report(
          postgresError(
            "idempotency_store_failed",
            `the inbox worker could not take an event: ${errorMessage(error)}.${hintFor(error)} It tries again.`,
            { cause: error },
          ),
          { outcome: "worker" },
        );
        await sleep(Math.min(pollMs * 2 ** Math.min(errorsInARow, 5), 30_000), generation);
        continue;
      }
      if (!took) await sleep(pollMs, seen);
    }
  };

  // LISTEN on a connection of its own; on failure, polling carries on and it reconnects.
  let listener: TClient | undefined;
  let releaseListener: (() => void) | undefined;
  const onNotification = (_message: PgNotification) => wakeAll();
  const listen = async (): Promise<void> => {
    if (closing) return;
    let client: TClient | undefined;
    let released = false;
    const retryLater = () => {
      if (!closing) setTimeout(() => void listen(), Math.max(pollMs, 1000)).unref?.();
    };
    try {
      client = await connectWithin(pool, QUERY_TIMEOUT_MS, () => new Error("no connection"));
      guardClient(client);
      const held = client;
      const onListenerError = (error: Error) => {
        held.removeListener?.("notification", onNotification);
        held.removeListener?.("error", onListenerError);
        if (!released) {
          released = true;
          held.release(error);
        }
        if (listener !== held) return;
        listener = undefined;
        report(
          postgresError(
            "idempotency_store_failed",
            `the worker's LISTEN connection failed: ${errorMessage(error)}. Polling every ${pollMs} ms until it reconnects.`,
            { cause: error },
          ),
          { outcome: "worker" },
        );
        retryLater();
      };
      client.on?.("error", onListenerError);
      client.on?.("notification", onNotification);
      await withTimeout(
        client.query(`LISTEN ${quoteIdentifier(t.channel)}`),
        QUERY_TIMEOUT_MS,
        () => new Error(`no answer within ${QUERY_TIMEOUT_MS} ms`),
      );
      if (released) throw new Error("the connection failed");
      listener = client;
      releaseListener = () => {
        if (released) return;
        released = true;
        held.release(true);
      };
      if (closing) await stopListening();
    } catch (error) {
      if (client !== undefined && !released) {
        released = true;
        client.removeListener?.("notification", onNotification);
        client.release(error instanceof Error ? error : true);
      }
      report(
        postgresError(
          "idempotency_store_failed",
          `the worker could not LISTEN: ${errorMessage(error)}.${hintFor(error)} Polling every ${pollMs} ms meanwhile.`,
          { cause: error },
        ),
        { outcome: "worker" },
      );
      retryLater();
    }
  };
  const stopListening = async () => {
    const client = listener;
    listener = undefined;
    if (client === undefined) return;
    client.removeListener?.("notification", onNotification);
    // Closed rather than pooled: the connection still has the LISTEN.
    releaseListener?.();
  };

  const ready = options.listen === false ? Promise.resolve() : listen();
  const slots = Array.from({ length: concurrency }, () => slot());
  const unobserve =
    instrumentation?.observeBacklog === undefined
      ? undefined
      : guarded(() =>
          instrumentation.observeBacklog?.({
            handoff: "postgres-inbox",
            read: () => readBacklog(options),
          }),
        );

  return {
    ready,
    stats,
    async close() {
      closing = true;
      guarded(() => unobserve?.());
      wakeAll();
      await ready;
      await Promise.all(slots);
      await stopListening();
    },
  };
}
