import {
  createLogWriter,
  MAPPA_EVENT_TYPES,
  type MappaBacklog,
  type MappaEvent,
  type MappaHandlerMap,
  type MappaInstrumentation,
  type MappaLogger,
  type MappaLogLevel,
  type MappaProcessStart,
  type MappaTraceCarrier,
  type MappaUnknownEvent,
  MappaWebhookError,
  type ProcessTrace,
  parseEvent,
  startProcessTrace,
} from "@mappa-webhooks/core";
import {
  type ConnectionOptions,
  type Job,
  type JobsOptions,
  Queue,
  UnrecoverableError,
  Worker,
  type WorkerOptions,
} from "bullmq";
import { checkCount, checkMs, MAX_TIMER_MS } from "./options.js";

/** What a hand-off job carries: the verified event as Mappa sent it. */
export interface MappaJobData {
  /** The event's JSON object, every field kept. The worker parses it back into a typed event. */
  event: Readonly<Record<string, unknown>>;
  /** When the receiver enqueued it (ISO 8601). */
  receivedAt: string;
  /**
   * The trace context of the delivery that enqueued it (W3C `traceparent`, ...), when the
   * hand-off is instrumented: the worker's span links to that delivery.
   */
  traceContext?: MappaTraceCarrier;
}

/** The part of a BullMQ `Queue` the hand-off uses. Pass your `Queue` as is. */
export interface MappaQueueLike {
  readonly name: string;
  add(name: string, data: MappaJobData, opts?: JobsOptions): Promise<{ id?: string | undefined }>;
}

/** Options of {@link createQueueHandoff}. */
export interface QueueHandoffOptions {
  /** The BullMQ queue to enqueue events to. Its name is the worker's `queueName`. */
  queue: MappaQueueLike;
  /**
   * How often the worker tries each event (BullMQ stores this with the job, so it survives
   * restarts). Every try counts: one that threw, one that timed out (`handlerTimeoutMs`) and one
   * whose worker died mid-handler. After the last, the job is parked in BullMQ's failed set.
   * Default 10.
   */
  attempts?: number;
  /**
   * Wait between tries (after a throw or a timeout; a crashed try is taken over once its lock
   * expires). Default `{ type: "exponential", delay: 1000 }` (1 s, 2 s, 4 s, ...).
   */
  backoff?: JobsOptions["backoff"];
  /** More BullMQ job options, merged over the defaults (`removeOnComplete` 24 h, `removeOnFail` 7 d). */
  jobOptions?: JobsOptions;
  /**
   * Longest wait for Redis to accept the job; then the delivery is answered 500 and Mappa
   * retries. Default 5000 ms; 1 to 2^31−1.
   */
  timeoutMs?: number;
  /**
   * The receiver's instrumentation (e.g. `openTelemetry()`): each job then carries the trace
   * context of the delivery that enqueued it (`data.traceContext`), and the worker's span links
   * to it. Pass the same one as the receiver's and the worker's `instrumentation`.
   */
  instrumentation?: MappaInstrumentation;
}

/** What {@link QueueHandoff.enqueue} is told besides the event. */
export interface EnqueueOptions {
  /** The trace context to store with the job; default: the active one (`instrumentation.inject()`). */
  traceContext?: MappaTraceCarrier;
}

/** Returned by {@link createQueueHandoff}. */
export interface QueueHandoff {
  /** Spread into the receiver's options: every event, known or not, is enqueued. */
  handlers: {
    on: MappaHandlerMap;
    onUnknown: (event: MappaUnknownEvent) => Promise<void>;
  };
  /** Enqueues one event and resolves with its job id once Redis stored the job. */
  enqueue(event: MappaEvent, options?: EnqueueOptions): Promise<string | undefined>;
}

const DEFAULT_ATTEMPTS = 10;
const DEFAULT_BACKOFF = { type: "exponential", delay: 1000 } as const;
const DEFAULT_TIMEOUT_MS = 5000;
const DAY_SECONDS = 24 * 60 * 60;

/** Calls `fn`; an instrumentation that throws never changes what the hand-off or worker does. */
function guarded<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function checkInstrumentation(
  where: string,
  instrumentation: MappaInstrumentation | undefined,
): MappaInstrumentation | undefined {
  if (instrumentation === undefined) return undefined;
  if (instrumentation === null || typeof instrumentation !== "object") {
    throw new MappaWebhookError(
      "invalid_options",
      `${where}: \`instrumentation\` must be an object such as \`openTelemetry()\` from @mappa-webhooks/opentelemetry.`,
    );
  }
  return instrumentation;
}

/** The time and count options of BullMQ job options, checked once at creation. */
function checkJobOptions(where: string, options: JobsOptions): void {
  checkCount(where, "jobOptions.attempts", options.attempts, 1);
  checkMs(where, "jobOptions.delay", options.delay, 0, 0);
  const { backoff } = options;
  if (typeof backoff === "number") {
    checkMs(where, "backoff", backoff, 0, 0);
  } else if (backoff !== undefined) {
    if (backoff === null || typeof backoff !== "object" || typeof backoff.type !== "string") {
      throw new MappaWebhookError(
        "invalid_options",
        `${where}: \`backoff\` must be a number of milliseconds or \`{ type: "fixed" | "exponential", delay }\`, got ${JSON.stringify(backoff)}.`,
      );
    }
    checkMs(where, "backoff.delay", backoff.delay, 0, 0);
  }
}

/**
 * The BullMQ job id of an event: its idempotency key, percent-encoding what BullMQ rejects
 * (`%` and `:`, and the first digit of an all-digit key, since integer ids are not allowed).
 * Every delivery of an event maps to the same job, so BullMQ ignores a second `add`.
 *
 * @example
 * ```ts
 * jobIdFor("evt_123"); // "evt_123"
 * jobIdFor("report.completed:job_1"); // "report.completed%3Ajob_1"
 * ```
 */
export function jobIdFor(idempotencyKey: string): string {
  const escaped = idempotencyKey.replace(/%/g, "%25").replace(/:/g, "%3A");
  if (/^\d+$/.test(escaped)) return `%3${escaped.slice(0, 1)}${escaped.slice(1)}`;
  return escaped;
}

/**
 * Durable hand-off to BullMQ: the receiver verifies and dedupes as usual, then its only
 * handler enqueues the event, and it answers 200 only after Redis stored the job (with the
 * default `ack: "after-handlers"`). A failed enqueue answers 500 and Mappa retries; the job id
 * is the event's idempotency key, so a repeated enqueue is a no-op. Run the handlers in a
 * worker made with {@link createMappaWorker}.
 *
 * @example
 * ```ts
 * import { Queue } from "bullmq";
 * import { mappaWebhook } from "@mappa-webhooks/express";
 * import { createQueueHandoff } from "@mappa-webhooks/redis/queue";
 *
 * const queue = new Queue("mappa-webhooks", { connection: { host: "127.0.0.1", port: 6379 } });
 * const handoff = createQueueHandoff({ queue });
 * app.use(mappaWebhook({ secret, idempotency, ...handoff.handlers })); // POST /webhooks/mappa
 * ```
 */
export function createQueueHandoff(options: QueueHandoffOptions): QueueHandoff {
  const queue = options?.queue;
  if (queue == null || typeof queue.add !== "function") {
    throw new MappaWebhookError(
      "invalid_options",
      "createQueueHandoff needs `{ queue }`: a BullMQ Queue.",
    );
  }
  const where = "createQueueHandoff";
  const timeoutMs = checkMs(where, "timeoutMs", options.timeoutMs, DEFAULT_TIMEOUT_MS);
  const defaults: JobsOptions = {
    attempts: checkCount(where, "attempts", options.attempts, DEFAULT_ATTEMPTS),
    backoff: options.backoff ?? DEFAULT_BACKOFF,
    // Kept long enough that a late re-delivery still finds the job and is deduplicated.
    removeOnComplete: { age: DAY_SECONDS },
    removeOnFail: { age: 7 * DAY_SECONDS },
    ...options.jobOptions,
  };
  checkJobOptions(where, defaults);
  const instrumentation = checkInstrumentation(where, options.instrumentation);

  const enqueue = async (
    event: MappaEvent,
    enqueueOptions?: EnqueueOptions,
  ): Promise<string | undefined> => {
    const jobOptions: JobsOptions =
      event.idempotencyKey === undefined
        ? defaults
        : { ...defaults, jobId: jobIdFor(event.idempotencyKey) };
    const data: MappaJobData = { event: event.raw, receivedAt: new Date().toISOString() };
    // Inside the receiver's handler the active context is the delivery's (its handler span).
    const traceContext = enqueueOptions?.traceContext ?? guarded(() => instrumentation?.inject?.());
    if (traceContext !== undefined) data.traceContext = { ...traceContext };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const add = queue.add(event.type, data, jobOptions);
    add.catch(() => {});
    try {
      const job = await Promise.race([
        add,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Redis did not store the job within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
      return job.id;
    } catch (cause) {
      const reason = cause instanceof Error ? cause.message : String(cause);
      throw new MappaWebhookError(
        "handler_failed",
        `Could not enqueue event ${event.idempotencyKey ?? event.type} to the BullMQ queue "${queue.name}": ${reason}. Answered 500 so Mappa retries the delivery.`,
        { cause },
      );
    } finally {
      clearTimeout(timer);
    }
  };

  const enqueueVoid = async (event: MappaEvent) => {
    await enqueue(event);
  };
  const on: MappaHandlerMap = {};
  for (const type of MAPPA_EVENT_TYPES) on[type] = enqueueVoid;
  return { handlers: { on, onUnknown: enqueueVoid }, enqueue };
}

/** What {@link MappaWorkerOptions.onError} is told besides the error. */
export type MappaWorkerErrorInfo =
  | {
      /**
       * An attempt failed: the handler threw or timed out, the job held no event, or attempts
       * cut short by a dying worker used every try.
       */
      phase: "handler";
      job: Job<MappaJobData>;
      /** The event, when the job held one. */
      event?: MappaEvent;
      /** True when no try is left: the job is parked in BullMQ's failed set (replayable). */
      final: boolean;
    }
  | {
      /** Trouble outside a handler, e.g. a lost Redis connection (BullMQ reconnects by itself). */
      phase: "worker";
    };

/** Options of {@link createMappaWorker}. */
export interface MappaWorkerOptions {
  /** The queue the hand-off enqueues to (`queue.name`). */
  queueName: string;
  /** Where Redis is: BullMQ connection options or an ioredis client. */
  connection: ConnectionOptions;
  /** Handlers by event type, as in the receiver; the second argument is the BullMQ job. */
  on?: MappaHandlerMap<Job<MappaJobData>>;
  /** Called for event types this package does not know; without it they complete unhandled. */
  onUnknown?: (event: MappaUnknownEvent, job: Job<MappaJobData>) => unknown;
  /** Jobs handled at once by this worker. Default 1. */
  concurrency?: number;
  /**
   * Longest run of one handler. Past it the attempt fails with `handler_timeout`, its
   * concurrency slot is freed, `onError` is told, and BullMQ retries the job after its backoff
   * (or parks it after the last attempt). A JavaScript function cannot be stopped from outside:
   * the abandoned handler keeps running in the background and its result is ignored, so give
   * your own I/O a timeout too. Default 300 000 (5 minutes); 1 to 2^31−1.
   */
  handlerTimeoutMs?: number;
  /**
   * Longest time `worker.close()` waits for running handlers. Past it their attempts fail with
   * `handler_timeout` (BullMQ records them and retries the jobs after their backoff, on any
   * worker), and the worker closes. Default 20 000 (20 s, inside the usual 30 s grace period
   * before SIGKILL); 1 to 2^31−1.
   */
  closeTimeoutMs?: number;
  /**
   * Told about every failed attempt (`phase: "handler"`: `handler_failed`, `handler_timeout`,
   * or `invalid_event` for a job that holds no event) and about worker trouble such as a lost
   * connection (`phase: "worker"`: BullMQ's or ioredis' own error). Never throws back.
   */
  onError?: (error: Error, info: MappaWorkerErrorInfo) => void;
  /**
   * More BullMQ worker options, e.g. `lockDuration` (default 30 s: how long a job stays claimed
   * without a heartbeat before it is considered stalled), `stalledInterval`, `prefix`.
   * `maxStalledCount` defaults to no limit of its own here (BullMQ's default is 1): a try cut
   * short by a dying worker counts against the job's `attempts` instead.
   */
  workerOptions?: Omit<WorkerOptions, "connection" | "concurrency">;
  /**
   * Traces and metrics (e.g. `openTelemetry()` from @mappa-webhooks/opentelemetry): one span
   * per attempt (handoff `"bullmq"`, linked to the delivery that enqueued the job), a child span
   * per handler, and backlog gauges of the queue: pending (waiting, prioritized, paused, delayed
   * and active jobs, i.e. every job not yet completed or failed), failed (the failed set) and the
   * age of the oldest pending job (by `job.timestamp`; among the oldest waiting job and the first
   * 100 delayed and active ones).
   */
  instrumentation?: MappaInstrumentation;
  /**
   * Where the worker logs: one line at `error` per failed attempt (the job, the event and what
   * to do, never the event's body), worker trouble at `warn`, and one line per handled job at
   * `info`. Anything with `debug`, `info`, `warn` and `error` (console, pino, winston). Default
   * `console`; `false` logs nothing.
   */
  logger?: MappaLogger | false;
  /** The lowest level logged. Default `"warn"`: failures only. */
  logLevel?: MappaLogLevel;
}

const DEFAULT_HANDLER_TIMEOUT_MS = 5 * 60 * 1000;
const DEFAULT_CLOSE_TIMEOUT_MS = 20_000;
// After closeTimeoutMs, how long BullMQ gets to record the failed attempts and close before
// close() stops waiting for it (only when Redis does not answer).
const CLOSE_RECORD_MS = 5000;
// Crashed tries are counted against `attempts` by the processor; BullMQ's own stall limit
// (default 1) would park a job after two crashes whatever its `attempts` say.
const DEFAULT_MAX_STALLED_COUNT = Number.MAX_SAFE_INTEGER;
const REPLAY = '`job.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true })`';
const LOG_PREFIX = "@mappa-webhooks/redis: ";
// How many delayed and active jobs the backlog looks at for the oldest pending one.
const BACKLOG_SCAN = 100;

/** Which job and event a log line is about. */
function jobText(job: Job<MappaJobData>, event: MappaEvent | undefined): string {
  const id = job.id ?? "?";
  if (event === undefined) return `job ${id}`;
  const key = event.id ?? event.idempotencyKey;
  return `job ${id} (${event.type}${key === undefined ? "" : ` ${key}`})`;
}

/** The message without the package prefix the error's message may start with. */
function bareMessage(error: Error): string {
  return error.message.replace(/^@mappa-webhooks(?:\/redis)?: /, "");
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isUnrecoverable(error: unknown): boolean {
  return (
    error instanceof UnrecoverableError ||
    (error instanceof Error && error.name === "UnrecoverableError")
  );
}

/** The worker options of {@link createMappaWorker}, checked once at creation. */
function checkWorkerOptions(options: MappaWorkerOptions): void {
  const where = "createMappaWorker";
  const bull = options.workerOptions ?? {};
  if (typeof bull !== "object" || bull === null) {
    throw new MappaWebhookError(
      "invalid_options",
      `${where}: \`workerOptions\` must be an object.`,
    );
  }
  checkMs(where, "workerOptions.lockDuration", bull.lockDuration, 0);
  checkMs(where, "workerOptions.lockRenewTime", bull.lockRenewTime, 0);
  checkMs(where, "workerOptions.stalledInterval", bull.stalledInterval, 0);
  checkCount(where, "workerOptions.maxStalledCount", bull.maxStalledCount, 0, 0);
}

/**
 * A BullMQ worker that runs a typed handler map on the events a {@link createQueueHandoff}
 * enqueued. What it guarantees:
 *
 * - A handler that throws fails the attempt; BullMQ retries it with the hand-off's `attempts`
 *   and `backoff`, then parks it in the failed set.
 * - A handler that never settles fails its attempt with `handler_timeout` after
 *   `handlerTimeoutMs`, freeing its slot; it is retried or parked like a throw.
 * - A worker that dies mid-job (crash, SIGKILL, out of memory) loses its lock; BullMQ's
 *   stalled-job check hands the job to another worker after `lockDuration`. That cut-short try
 *   counts against `attempts`, so a job that kills every worker running it is parked after its
 *   last attempt instead of crashing workers forever.
 * - A lost Redis connection never crashes the process: BullMQ reconnects and carries on
 *   (`onError` hears about it).
 * - `worker.close()` resolves within `closeTimeoutMs` (plus Redis round trips) even with a hung
 *   handler.
 *
 * Handlers may therefore run more than once for an event: make their writes idempotent, keyed
 * by `event.idempotencyKey` or `job.id`.
 *
 * @example
 * ```ts
 * import { createMappaWorker } from "@mappa-webhooks/redis/queue";
 *
 * const worker = createMappaWorker({
 *   queueName: "mappa-webhooks",
 *   connection: { host: "127.0.0.1", port: 6379 },
 *   concurrency: 5,
 *   handlerTimeoutMs: 60_000,
 *   on: { "report.completed": async (event) => saveReport(event.data.reportId) },
 *   onError: (error, info) => console.error(info.phase, error.message),
 * });
 * process.on("SIGTERM", () => worker.close());
 * ```
 */
export function createMappaWorker(options: MappaWorkerOptions): Worker<MappaJobData> {
  if (
    options == null ||
    typeof options.queueName !== "string" ||
    options.queueName === "" ||
    options.connection == null
  ) {
    throw new MappaWebhookError(
      "invalid_options",
      "createMappaWorker needs `queueName` (the hand-off queue's name) and `connection`.",
    );
  }
  const where = "createMappaWorker";
  const concurrency = checkCount(where, "concurrency", options.concurrency, 1);
  const handlerTimeoutMs = checkMs(
    where,
    "handlerTimeoutMs",
    options.handlerTimeoutMs,
    DEFAULT_HANDLER_TIMEOUT_MS,
  );
  const closeTimeoutMs = checkMs(
    where,
    "closeTimeoutMs",
    options.closeTimeoutMs,
    DEFAULT_CLOSE_TIMEOUT_MS,
  );
  checkWorkerOptions(options);
  const { onError } = options;
  if (onError !== undefined && typeof onError !== "function") {
    throw new MappaWebhookError("invalid_options", `${where}: \`onError\` must be a function.`);
  }
  const report = (error: Error, info: MappaWorkerErrorInfo) => {
    try {
      onError?.(error, info);
    } catch {
      // onError must never break the worker.
    }
  };
  const instrumentation = checkInstrumentation(where, options.instrumentation);
  let log: MappaLogger;
  try {
    log = createLogWriter({ logger: options.logger, logLevel: options.logLevel });
  } catch (error) {
    throw new MappaWebhookError(
      "invalid_options",
      `${where}: ${reasonOf(error).replace(/^@mappa-webhooks: /, "")}`,
    );
  }
  const startTrace = (
    job: Job<MappaJobData>,
    event: MappaEvent | undefined,
    attempt: number,
  ): ProcessTrace | undefined => {
    const start: MappaProcessStart = { handoff: "bullmq", attempt, startedAt: Date.now() };
    if (event !== undefined) start.event = event;
    if (job.data?.traceContext != null) start.carrier = job.data.traceContext;
    return startProcessTrace(instrumentation, start);
  };
  /** A failed attempt: `onError`, one log line, and the attempt's span ended. */
  const attemptFailed = (
    error: Error,
    info: Extract<MappaWorkerErrorInfo, { phase: "handler" }>,
    attempt: number,
    attempts: number,
    trace: ProcessTrace | undefined,
    fix: string,
  ) => {
    report(error, info);
    const code = error instanceof MappaWebhookError ? error.code : error.name;
    log.error(
      `${LOG_PREFIX}${jobText(info.job, info.event)} attempt ${attempt} of ${attempts} failed, ${code}: ${bareMessage(error)}${fix === "" ? "" : ` ${fix}`}`,
    );
    trace?.end("failed", error, !info.final);
  };
  const handlers = options.on ?? {};
  // Rejects the running attempts at once, for a close that waited long enough.
  const running = new Set<() => void>();

  const runHandler = async (
    handler: () => unknown,
    job: Job<MappaJobData>,
    event: MappaEvent,
  ): Promise<void> => {
    const what = `the handler of job ${job.id ?? "?"} (${event.type} ${event.idempotencyKey ?? ""})`;
    const call = Promise.resolve().then(handler);
    // A handler that settles after its attempt was given up must not become unhandled.
    call.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    let abort: (() => void) | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new MappaWebhookError(
              "handler_timeout",
              `${what} did not settle within ${handlerTimeoutMs} ms (\`handlerTimeoutMs\`), so the attempt failed and its slot was freed; the handler keeps running in the background and its result is ignored. Give its I/O a timeout, or raise \`handlerTimeoutMs\`.`,
            ),
          ),
        handlerTimeoutMs,
      );
      abort = () =>
        reject(
          new MappaWebhookError(
            "handler_timeout",
            `${what} had not settled when the worker closed (waited \`closeTimeoutMs\`, ${closeTimeoutMs} ms), so the attempt failed; BullMQ retries the job after its backoff.`,
          ),
        );
      running.add(abort);
    });
    try {
      await Promise.race([call, limit]);
    } finally {
      clearTimeout(timer);
      if (abort !== undefined) running.delete(abort);
    }
  };

  const processor = async (job: Job<MappaJobData>): Promise<void> => {
    const attempts = Math.max(1, job.opts.attempts ?? 1);
    // `attemptsStarted` counts this start; a start that neither failed nor completed was cut
    // short: its worker died or lost the lock, and BullMQ's stalled check gave the job back.
    const started = typeof job.attemptsStarted === "number" ? job.attemptsStarted : undefined;
    const interrupted = started === undefined ? 0 : Math.max(0, started - 1 - job.attemptsMade);
    const attempt = started ?? job.attemptsMade + 1;

    let event: MappaEvent | undefined;
    let parseError: unknown;
    try {
      event = parseEvent(JSON.stringify(job.data.event));
    } catch (cause) {
      parseError = cause;
    }
    const trace = startTrace(job, event, attempt);

    if (started !== undefined && interrupted > 0 && started - 1 >= attempts) {
      const message = `@mappa-webhooks/redis: job ${job.id ?? "?"} was started ${started - 1} times and ${interrupted} of them never finished (its worker died or lost the job's lock mid-handler), so all ${attempts} attempts are used: the job is parked in the failed set instead of being run again. Fix the cause, then replay it with ${REPLAY}.`;
      const parked = new UnrecoverableError(message);
      attemptFailed(
        new MappaWebhookError("handler_failed", message.replace(/^@mappa-webhooks\/redis: /, "")),
        { phase: "handler", job, ...(event === undefined ? {} : { event }), final: true },
        attempt,
        attempts,
        trace,
        "",
      );
      throw parked;
    }

    if (event === undefined) {
      // Retrying a job that cannot be parsed would fail the same way every time.
      const message = `job ${job.id ?? "?"} does not hold a Mappa event: ${reasonOf(parseError)}`;
      attemptFailed(
        new MappaWebhookError("invalid_event", `${message}. It is parked without retries.`),
        { phase: "handler", job, final: true },
        attempt,
        attempts,
        trace,
        "Enqueue events through createQueueHandoff only; remove this job once inspected.",
      );
      throw new UnrecoverableError(`@mappa-webhooks/redis: ${message}`);
    }
    const parsed = event;
    let handler: (() => unknown) | undefined;
    if (parsed.known) {
      const known = handlers[parsed.type] as
        | ((event: MappaEvent, job: Job<MappaJobData>) => unknown)
        | undefined;
      if (known !== undefined) handler = () => known(parsed, job);
    } else if (options.onUnknown !== undefined) {
      const onUnknown = options.onUnknown;
      handler = () => onUnknown(parsed as MappaUnknownEvent, job);
    }
    if (handler !== undefined) {
      const step = trace?.step(parsed.type);
      const run = handler;
      try {
        await runHandler(step === undefined ? run : () => step.run(run), job, parsed);
        step?.end();
      } catch (error) {
        step?.end(error);
        // The last try: BullMQ parks it now, or (with tries cut short) the next start would.
        const final =
          isUnrecoverable(error) || (started !== undefined ? started >= attempts : false);
        const info = { phase: "handler", job, event: parsed, final } as const;
        if (error instanceof MappaWebhookError && error.code === "handler_timeout") {
          attemptFailed(
            error,
            info,
            attempt,
            attempts,
            trace,
            final ? `That was its last attempt: parked; replay it with ${REPLAY}.` : "",
          );
        } else {
          const next = final
            ? "That was its last attempt: the job is parked in the failed set."
            : "BullMQ retries it after its backoff.";
          attemptFailed(
            new MappaWebhookError(
              "handler_failed",
              `The ${parsed.type} handler of job ${job.id ?? "?"} threw: ${reasonOf(error)}. ${next}`,
              { cause: error },
            ),
            info,
            attempt,
            attempts,
            trace,
            final
              ? `Fix the handler, then replay the job with ${REPLAY}.`
              : "Fix the handler if it keeps failing.",
          );
        }
        if (final && interrupted > 0 && !isUnrecoverable(error)) {
          // BullMQ alone would retry (it does not count the cut-short tries): park it now.
          throw new UnrecoverableError(
            `${reasonOf(error)} (attempt ${started} of ${attempts}, ${interrupted} cut short by a dying worker; parked, replay with ${REPLAY})`,
          );
        }
        throw error;
      }
    }
    trace?.end("handled");
    log.info(
      `${LOG_PREFIX}${jobText(job, parsed)} ${handler === undefined ? "completed (no handler for its type)" : "handled"}, attempt ${attempt} of ${attempts}`,
    );
  };

  const worker = new Worker<MappaJobData>(options.queueName, processor, {
    maxStalledCount: DEFAULT_MAX_STALLED_COUNT,
    ...options.workerOptions,
    connection: options.connection,
    concurrency,
  });
  // Always listened to: a lost connection is logged (and told to `onError`), never thrown.
  worker.on("error", (error) => {
    report(error, { phase: "worker" });
    log.warn(
      `${LOG_PREFIX}worker trouble on queue "${options.queueName}": ${reasonOf(error)} (BullMQ reconnects by itself; check that Redis is reachable if this repeats).`,
    );
  });
  const stopBacklog = observeQueueBacklog(options, instrumentation);

  // BullMQ's close waits for every running processor; past closeTimeoutMs the hung ones are
  // failed (and recorded while the connection is still open). With Redis unreachable BullMQ
  // cannot finish closing (its commands wait for a reconnect, and an ioredis client that is
  // between reconnection attempts never reports its end), so after CLOSE_RECORD_MS more the
  // connection is dropped and close() resolves anyway; the jobs whose outcome was not
  // recorded are taken over by another worker once their lock expires.
  const bullClose = worker.close.bind(worker);
  let closing: Promise<void> | undefined;
  worker.close = (force = false) => {
    closing ??= new Promise<void>((resolve, reject) => {
      const abortTimer = setTimeout(() => {
        for (const abort of [...running]) abort();
      }, closeTimeoutMs);
      const giveUpMs = Math.min(closeTimeoutMs + CLOSE_RECORD_MS, MAX_TIMER_MS);
      const giveUpTimer = setTimeout(() => {
        report(
          new Error(
            `@mappa-webhooks/redis: worker.close() stopped waiting for BullMQ after ${giveUpMs} ms (Redis did not answer). Jobs whose outcome was not recorded are taken over by another worker once their lock expires.`,
          ),
          { phase: "worker" },
        );
        worker.disconnect().catch(() => {});
        resolve();
      }, giveUpMs);
      const backlogClosed = stopBacklog();
      bullClose(force)
        .then(() => backlogClosed)
        .then(resolve, reject)
        .finally(() => {
          clearTimeout(abortTimer);
          clearTimeout(giveUpTimer);
        });
    });
    return closing;
  };
  return worker;
}

/**
 * Registers the queue's backlog gauges with the instrumentation (when it observes backlogs);
 * resolves the function that unregisters them and closes the queue it reads through.
 */
function observeQueueBacklog(
  options: MappaWorkerOptions,
  instrumentation: MappaInstrumentation | undefined,
): () => Promise<void> {
  if (instrumentation?.observeBacklog === undefined) return async () => {};
  let queue: Queue | undefined;
  let closed = false;
  const read = async (): Promise<MappaBacklog> => {
    if (closed) throw new Error("the worker is closed");
    if (queue === undefined) {
      const prefix = options.workerOptions?.prefix;
      queue = new Queue(options.queueName, {
        connection: options.connection,
        ...(prefix === undefined ? {} : { prefix }),
      });
      // A failed read reports nothing this time; the queue's client reconnects by itself.
      queue.on("error", () => {});
    }
    const [counts, waiting, others] = await Promise.all([
      queue.getJobCounts("waiting", "prioritized", "delayed", "active", "failed"),
      queue.getJobs(["waiting"], 0, 0, true),
      queue.getJobs(["delayed", "active"], 0, BACKLOG_SCAN - 1, true),
    ]);
    let pending = 0;
    for (const [type, count] of Object.entries(counts)) {
      if (type !== "failed") pending += Number(count) || 0;
    }
    let oldest = Number.POSITIVE_INFINITY;
    for (const job of [...waiting, ...others]) {
      if (job != null && Number.isFinite(job.timestamp)) oldest = Math.min(oldest, job.timestamp);
    }
    return {
      pending,
      failed: Number(counts.failed) || 0,
      oldestPendingAgeSec:
        pending === 0 || !Number.isFinite(oldest) ? 0 : Math.max(0, (Date.now() - oldest) / 1000),
    };
  };
  const unobserve =
    guarded(() => instrumentation.observeBacklog?.({ handoff: "bullmq", read })) ?? (() => {});
  return async () => {
    closed = true;
    guarded(unobserve);
    await queue?.close().catch(() => {});
  };
}
