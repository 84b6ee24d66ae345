import {
  MAPPA_EVENT_TYPES,
  type MappaEvent,
  type MappaHandlerMap,
  type MappaUnknownEvent,
  MappaWebhookError,
  parseEvent,
} from "@mappa-webhooks/core";
import {
  type ConnectionOptions,
  type Job,
  type JobsOptions,
  UnrecoverableError,
  Worker,
  type WorkerOptions,
} from "bullmq";

/** What a hand-off job carries: the verified event as Mappa sent it. */
export interface MappaJobData {
  /** The event's JSON object, every field kept. The worker parses it back into a typed event. */
  event: Readonly<Record<string, unknown>>;
  /** When the receiver enqueued it (ISO 8601). */
  receivedAt: string;
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
   * restarts). Default 10.
   */
  attempts?: number;
  /** Wait between tries. Default `{ type: "exponential", delay: 1000 }` (1 s, 2 s, 4 s, ...). */
  backoff?: JobsOptions["backoff"];
  /** More BullMQ job options, merged over the defaults (`removeOnComplete` 24 h, `removeOnFail` 7 d). */
  jobOptions?: JobsOptions;
  /**
   * Longest wait for Redis to accept the job; then the delivery is answered 500 and Mappa
   * retries. Default 5000 ms.
   */
  timeoutMs?: number;
}

/** Returned by {@link createQueueHandoff}. */
export interface QueueHandoff {
  /** Spread into the receiver's options: every event, known or not, is enqueued. */
  handlers: {
    on: MappaHandlerMap;
    onUnknown: (event: MappaUnknownEvent) => Promise<void>;
  };
  /** Enqueues one event and resolves with its job id once Redis stored the job. */
  enqueue(event: MappaEvent): Promise<string | undefined>;
}

const DEFAULT_ATTEMPTS = 10;
const DEFAULT_BACKOFF = { type: "exponential", delay: 1000 } as const;
const DEFAULT_TIMEOUT_MS = 5000;
const DAY_SECONDS = 24 * 60 * 60;

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
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const defaults: JobsOptions = {
    attempts: options.attempts ?? DEFAULT_ATTEMPTS,
    backoff: options.backoff ?? DEFAULT_BACKOFF,
    // Kept long enough that a late re-delivery still finds the job and is deduplicated.
    removeOnComplete: { age: DAY_SECONDS },
    removeOnFail: { age: 7 * DAY_SECONDS },
    ...options.jobOptions,
  };

  const enqueue = async (event: MappaEvent): Promise<string | undefined> => {
    const jobOptions: JobsOptions =
      event.idempotencyKey === undefined
        ? defaults
        : { ...defaults, jobId: jobIdFor(event.idempotencyKey) };
    const data: MappaJobData = { event: event.raw, receivedAt: new Date().toISOString() };
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
   * More BullMQ worker options, e.g. `lockDuration` (default 30 s: how long a job stays
   * claimed without a heartbeat before it is considered stalled) and `stalledInterval`.
   */
  workerOptions?: Omit<WorkerOptions, "connection" | "concurrency">;
}

/**
 * A BullMQ worker that runs a typed handler map on the events a {@link createQueueHandoff}
 * enqueued. A handler that throws fails the attempt; BullMQ retries it with the hand-off's
 * `attempts` and `backoff`. A worker that dies mid-job loses its lock, and BullMQ's stalled-job
 * check hands the job to another worker, so handlers must be safe to run again for an event
 * (use `event.idempotencyKey` or `job.id` as the key of their own writes).
 *
 * @example
 * ```ts
 * import { createMappaWorker } from "@mappa-webhooks/redis/queue";
 *
 * const worker = createMappaWorker({
 *   queueName: "mappa-webhooks",
 *   connection: { host: "127.0.0.1", port: 6379 },
 *   concurrency: 5,
 *   on: { "report.completed": async (event) => saveReport(event.data.reportId) },
 * });
 * process.on("SIGTERM", () => worker.close());
 * ```
 */
export function createMappaWorker(options: MappaWorkerOptions): Worker<MappaJobData> {
  if (options == null || typeof options.queueName !== "string" || options.queueName === "") {
    throw new MappaWebhookError(
      "invalid_options",
      "createMappaWorker needs `queueName` (the hand-off queue's name) and `connection`.",
    );
  }
  const handlers = options.on ?? {};
  const processor = async (job: Job<MappaJobData>): Promise<void> => {
    let event: MappaEvent;
    try {
      event = parseEvent(JSON.stringify(job.data.event));
    } catch (cause) {
      // Retrying a job that cannot be parsed would fail the same way every time.
      throw new UnrecoverableError(
        `@mappa-webhooks/redis: job ${job.id ?? "?"} does not hold a Mappa event: ${cause instanceof Error ? cause.message : String(cause)}`,
      );
    }
    if (event.known) {
      const handler = handlers[event.type] as
        | ((event: MappaEvent, job: Job<MappaJobData>) => unknown)
        | undefined;
      if (handler !== undefined) await handler(event, job);
    } else if (options.onUnknown !== undefined) {
      await options.onUnknown(event, job);
    }
  };
  return new Worker<MappaJobData>(options.queueName, processor, {
    ...options.workerOptions,
    connection: options.connection,
    concurrency: options.concurrency ?? 1,
  });
}
