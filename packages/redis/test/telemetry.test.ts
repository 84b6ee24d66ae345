import { type MappaLogger, parseEvent } from "@mappa-webhooks/core";
import { ATTR, METRIC, openTelemetry } from "@mappa-webhooks/opentelemetry";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { context, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  type DataPoint,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { Queue, type Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  createMappaWorker,
  createQueueHandoff,
  jobIdFor,
  type MappaJobData,
  type MappaWorkerOptions,
} from "../src/queue.js";
import {
  bullConnection,
  connect,
  deleteKeys,
  keyOf,
  SECRET,
  startNodeReceiver,
  uniquePrefix,
  waitFor,
} from "./helpers.js";

// Real HTTP, real Redis and BullMQ, the real OpenTelemetry SDK (in-memory exporter and reader).

class CollectingReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

const prefix = uniquePrefix("telemetry");
const bullPrefix = `${prefix}:bull`;
const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const contextManager = new AsyncLocalStorageContextManager();
let redis: Redis;
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  redis = connect();
  await redis.ping();
});

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await deleteKeys(redis, prefix);
  redis.disconnect();
  context.disable();
  await tracerProvider.shutdown();
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** A logger that keeps every line, by level. */
function recordingLogger(): MappaLogger & { lines: Array<{ level: string; line: string }> } {
  const lines: Array<{ level: string; line: string }> = [];
  const at = (level: string) => (line: string) => {
    lines.push({ level, line });
  };
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

function newQueue(name: string): Queue<MappaJobData> {
  const queue = new Queue<MappaJobData>(name, { connection: bullConnection(), prefix: bullPrefix });
  closers.push(() => queue.close());
  return queue;
}

function newWorker(options: MappaWorkerOptions): Worker<MappaJobData> {
  const worker = createMappaWorker({
    ...options,
    workerOptions: { prefix: bullPrefix, ...options.workerOptions },
  });
  closers.push(() => worker.close());
  return worker;
}

async function post(url: string, body: string): Promise<number> {
  const signature = await signPayload({ payload: body, secret: SECRET });
  const response = await fetch(url, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", "mappa-signature": signature },
  });
  await response.text();
  return response.status;
}

/** The worker spans (handoff "bullmq") of one job, in the order they ended. */
function workerSpans(jobId: string): ReadableSpan[] {
  return exporter
    .getFinishedSpans()
    .filter(
      (span) =>
        span.kind === SpanKind.CONSUMER &&
        span.attributes[ATTR.HANDOFF] === "bullmq" &&
        span.attributes[ATTR.JOB_ID] === jobId,
    );
}

function deliverySpan(jobId: string): ReadableSpan | undefined {
  return exporter
    .getFinishedSpans()
    .find(
      (span) =>
        span.kind === SpanKind.CONSUMER &&
        span.attributes[ATTR.HANDOFF] === undefined &&
        span.attributes[ATTR.JOB_ID] === jobId,
    );
}

function gauge(collected: ResourceMetrics, name: string, handoff: string): number | undefined {
  for (const scope of collected.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== name) continue;
      for (const point of metric.dataPoints as DataPoint<number>[]) {
        if (point.attributes[ATTR.HANDOFF] === handoff) return point.value;
      }
    }
  }
  return undefined;
}

describe("BullMQ hand-off telemetry over real HTTP and Redis", () => {
  it("links each attempt's span to the delivery that enqueued the job, marks a failed attempt ERROR, and logs one line per failed attempt", async () => {
    exporter.reset();
    const instrumentation = openTelemetry({ tracerProvider });
    const queue = newQueue("traced");
    const handoff = createQueueHandoff({
      queue,
      instrumentation,
      attempts: 2,
      backoff: { type: "fixed", delay: 50 },
    });
    const receiver = await startNodeReceiver({
      secret: SECRET,
      idempotency: false,
      logger: false,
      instrumentation,
      ...handoff.handlers,
    });
    closers.push(() => receiver.close());

    const secretNote = "body-only-text-4c1e";
    const ok = createTestEvent("report.completed");
    const flaky = createTestEvent("report.completed");
    const broken = createTestEvent("report.failed", {
      data: { error: { code: "audio_too_short", message: secretNote } },
    });
    const tries = new Map<string, number>();
    const logger = recordingLogger();
    newWorker({
      queueName: queue.name,
      connection: bullConnection(),
      instrumentation,
      logger,
      on: {
        "report.completed": async (event) => {
          const n = (tries.get(event.data.jobId) ?? 0) + 1;
          tries.set(event.data.jobId, n);
          if (event.data.jobId === flaky.data.jobId && n === 1) {
            throw new Error("the report store was busy");
          }
        },
        "report.failed": async () => {
          throw new Error("cannot record the failure");
        },
      },
    });

    for (const event of [ok, flaky, broken]) {
      expect(await post(receiver.url, JSON.stringify(event))).toBe(200);
    }
    // The job carries the delivery's trace context.
    const stored = await queue.getJob(jobIdFor(keyOf(ok)));
    expect(stored?.data.traceContext?.traceparent).toMatch(/^00-[\da-f]{32}-[\da-f]{16}-01$/);

    await waitFor(
      () =>
        workerSpans(ok.data.jobId).length === 1 &&
        workerSpans(flaky.data.jobId).length === 2 &&
        workerSpans(broken.data.jobId).length === 2,
      30_000,
    );

    // A handled job: a CONSUMER span linked to the delivery span (same trace, the delivery's
    // trace context), with the event's attributes and a handler child span.
    const delivery = deliverySpan(ok.data.jobId) as ReadableSpan;
    expect(delivery).toBeDefined();
    const [handled] = workerSpans(ok.data.jobId) as [ReadableSpan];
    expect(handled.links).toHaveLength(1);
    expect(handled.links[0]?.context.traceId).toBe(delivery.spanContext().traceId);
    expect(handled.spanContext().traceId).not.toBe(delivery.spanContext().traceId);
    expect(handled.attributes).toMatchObject({
      [ATTR.MESSAGING_SYSTEM]: "mappa",
      [ATTR.EVENT_TYPE]: "report.completed",
      [ATTR.JOB_ID]: ok.data.jobId,
      [ATTR.OUTCOME]: "handled",
      [ATTR.HANDOFF]: "bullmq",
      [ATTR.ATTEMPT]: 1,
    });
    expect(handled.status.code).not.toBe(SpanStatusCode.ERROR);
    const handlerSpan = exporter
      .getFinishedSpans()
      .find(
        (span) =>
          span.name === "mappa.webhook.handler" &&
          span.parentSpanContext?.spanId === handled.spanContext().spanId,
      );
    expect(handlerSpan?.attributes[ATTR.EVENT_TYPE]).toBe("report.completed");

    // A failed attempt then a retry that succeeds, each linked to the same delivery.
    const [first, second] = workerSpans(flaky.data.jobId) as [ReadableSpan, ReadableSpan];
    const flakyDelivery = deliverySpan(flaky.data.jobId) as ReadableSpan;
    expect(first.status.code).toBe(SpanStatusCode.ERROR);
    expect(first.attributes).toMatchObject({
      [ATTR.OUTCOME]: "failed",
      [ATTR.ERROR_TYPE]: "handler_failed",
      [ATTR.WILL_RETRY]: true,
      [ATTR.ATTEMPT]: 1,
    });
    expect(second.attributes).toMatchObject({ [ATTR.OUTCOME]: "handled", [ATTR.ATTEMPT]: 2 });
    for (const span of [first, second]) {
      expect(span.links[0]?.context.traceId).toBe(flakyDelivery.spanContext().traceId);
    }
    // A job that fails every attempt: the last says it will not be retried.
    const [, last] = workerSpans(broken.data.jobId) as [ReadableSpan, ReadableSpan];
    expect(last.attributes).toMatchObject({
      [ATTR.OUTCOME]: "failed",
      [ATTR.ERROR_TYPE]: "handler_failed",
      [ATTR.WILL_RETRY]: false,
      [ATTR.ATTEMPT]: 2,
    });

    // Logs: one error line per failed attempt (1 + 2), naming the event and the fix; nothing
    // for the successes at the default level; never the body.
    await waitFor(() => logger.lines.length >= 3, 20_000);
    const errors = logger.lines.filter((l) => l.level === "error").map((l) => l.line);
    expect(errors, errors.join("\n")).toHaveLength(3);
    expect(logger.lines.filter((l) => l.level !== "error")).toEqual([]);
    const flakyLines = errors.filter((line) => line.includes(flaky.id));
    expect(flakyLines).toHaveLength(1);
    expect(flakyLines[0]).toMatch(
      /^@mappa-webhooks\/redis: job .* \(report\.completed .*\) attempt 1 of 2 failed, handler_failed: .*the report store was busy.*BullMQ retries it.*Fix the handler/,
    );
    const brokenLines = errors.filter((line) => line.includes(broken.id));
    expect(brokenLines).toHaveLength(2);
    expect(brokenLines[1]).toMatch(/attempt 2 of 2 failed.*parked.*replay the job with/);
    for (const line of errors) expect(line).not.toContain(secretNote);
  });

  it("logs handled jobs at info when asked, and nothing with logger: false", async () => {
    const queue = newQueue("logs");
    const handoff = createQueueHandoff({ queue, attempts: 1 });
    const info = recordingLogger();
    const events = [createTestEvent("report.completed"), createTestEvent("report.failed")];
    const spies = (["debug", "info", "warn", "error"] as const).map((level) =>
      vi.spyOn(console, level).mockImplementation(() => {}),
    );
    let settled = 0;
    newWorker({
      queueName: queue.name,
      connection: bullConnection(),
      logger: info,
      logLevel: "info",
      on: { "report.completed": () => {} },
    });
    for (const event of events) await handoff.enqueue(parseEvent(JSON.stringify(event)));
    await waitFor(() => info.lines.length >= 2, 20_000);
    expect(info.lines.map((l) => l.level).sort(), JSON.stringify(info.lines)).toEqual([
      "info",
      "info",
    ]);
    expect(info.lines.some((l) => l.line.includes("completed (no handler for its type)"))).toBe(
      true,
    );

    const silentQueue = newQueue("silent");
    const silentHandoff = createQueueHandoff({ queue: silentQueue, attempts: 1 });
    const worker = newWorker({
      queueName: silentQueue.name,
      connection: bullConnection(),
      logger: false,
      on: {
        "report.completed": () => {
          throw new Error("always");
        },
      },
    });
    worker.on("failed", () => {
      settled++;
    });
    await silentHandoff.enqueue(parseEvent(JSON.stringify(createTestEvent("report.completed"))));
    await waitFor(() => settled === 1, 20_000);
    for (const spy of spies) {
      const ours = spy.mock.calls.filter((call) => String(call[0]).includes("@mappa-webhooks"));
      expect(ours).toEqual([]);
    }
  });

  it("reports the queue's pending, failed and oldest pending age as backlog gauges", async () => {
    const reader = new CollectingReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    closers.push(() => meterProvider.shutdown());
    const instrumentation = openTelemetry({ tracerProvider, meterProvider });
    const queue = newQueue("backlog");
    const handoff = createQueueHandoff({ queue, attempts: 1 });
    // The oldest job was stored two minutes ago (BullMQ's `timestamp`).
    const old = createQueueHandoff({
      queue,
      attempts: 1,
      jobOptions: { timestamp: Date.now() - 120_000 },
    });
    let failed = 0;
    const worker = newWorker({
      queueName: queue.name,
      connection: bullConnection(),
      instrumentation,
      logger: false,
      workerOptions: { autorun: false },
      on: {
        "report.completed": () => {
          throw new Error("parked");
        },
      },
    });
    worker.on("failed", () => {
      failed++;
    });

    const empty = (await reader.collect()).resourceMetrics;
    expect(gauge(empty, METRIC.BACKLOG_PENDING, "bullmq")).toBe(0);
    expect(gauge(empty, METRIC.BACKLOG_OLDEST_AGE, "bullmq")).toBe(0);

    await old.enqueue(parseEvent(JSON.stringify(createTestEvent("report.completed"))));
    await handoff.enqueue(parseEvent(JSON.stringify(createTestEvent("report.completed"))));
    await handoff.enqueue(parseEvent(JSON.stringify(createTestEvent("report.completed"))));
    const waiting = (await reader.collect()).resourceMetrics;
    expect(gauge(waiting, METRIC.BACKLOG_PENDING, "bullmq")).toBe(3);
    expect(gauge(waiting, METRIC.BACKLOG_FAILED, "bullmq")).toBe(0);
    const age = gauge(waiting, METRIC.BACKLOG_OLDEST_AGE, "bullmq") as number;
    expect(age).toBeGreaterThanOrEqual(119);
    expect(age).toBeLessThan(600);

    // The worker runs them; each fails its only attempt and is parked.
    void worker.run();
    await waitFor(() => failed === 3, 30_000);
    const parked = (await reader.collect()).resourceMetrics;
    expect(gauge(parked, METRIC.BACKLOG_PENDING, "bullmq")).toBe(0);
    expect(gauge(parked, METRIC.BACKLOG_FAILED, "bullmq")).toBe(3);
    expect(gauge(parked, METRIC.BACKLOG_OLDEST_AGE, "bullmq")).toBe(0);
    await worker.close();
  });
});
