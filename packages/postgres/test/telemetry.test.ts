import { type MappaLogger, parseEvent } from "@mappa-webhooks/core";
import { ATTR, METRIC, openTelemetry } from "@mappa-webhooks/opentelemetry";
import { createTestEvent } from "@mappa-webhooks/testing";
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
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  createInbox,
  createInboxWorker,
  getEvent,
  type InboxWorker,
  type InboxWorkerOptions,
  migrate,
  readBacklog,
  schemaSql,
} from "../src/index.js";
import {
  createTestDatabase,
  deliver,
  keyOf,
  SECRET,
  type TestDatabase,
  waitFor,
} from "./helpers.js";
import { startReceiver } from "./receivers.js";

// Real HTTP (express), real Postgres, the real OpenTelemetry SDK (in-memory exporter and reader).

class CollectingReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const contextManager = new AsyncLocalStorageContextManager();
let db: TestDatabase;
const workers: InboxWorker[] = [];

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  db = await createTestDatabase("telemetry", { pool: { max: 10 } });
});

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.close()));
  await db?.drop();
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

function startWorker(options: Omit<InboxWorkerOptions, "pool" | "schema">): InboxWorker {
  const worker = createInboxWorker({
    pool: db.pool,
    schema: db.schema,
    pollIntervalMs: 50,
    backoff: () => 0,
    ...options,
  });
  workers.push(worker);
  return worker;
}

/** The worker spans (handoff "postgres-inbox") of one job, in the order they ended. */
function workerSpans(jobId: string): ReadableSpan[] {
  return exporter
    .getFinishedSpans()
    .filter(
      (span) =>
        span.kind === SpanKind.CONSUMER &&
        span.attributes[ATTR.HANDOFF] === "postgres-inbox" &&
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

describe("Postgres inbox worker telemetry over real HTTP and Postgres", () => {
  it("links each attempt's span to the delivery that stored the event, marks a failed attempt ERROR, and logs one line per failed attempt", async () => {
    exporter.reset();
    const instrumentation = openTelemetry({ tracerProvider });
    const inbox = createInbox({ pool: db.pool, schema: db.schema });
    const receiver = await startReceiver("express", {
      secret: SECRET,
      logger: false,
      instrumentation,
      ...inbox.receiverOptions,
    });
    const secretNote = "body-only-text-71ab";
    const ok = createTestEvent("report.completed");
    const flaky = createTestEvent("report.completed");
    const broken = createTestEvent("report.failed", {
      data: { error: { code: "audio_too_short", message: secretNote } },
    });
    const logger = recordingLogger();
    const tries = new Map<string, number>();
    try {
      for (const event of [ok, flaky, broken]) {
        expect((await deliver(receiver.url, event)).status).toBe(200);
      }
      // The delivery's outcome is `stored`: the inbox row is the claim.
      expect(deliverySpan(ok.data.jobId)?.attributes[ATTR.OUTCOME]).toBe("stored");

      startWorker({
        instrumentation,
        logger,
        maxAttempts: 2,
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
      await waitFor(
        () =>
          workerSpans(ok.data.jobId).length === 1 &&
          workerSpans(flaky.data.jobId).length === 2 &&
          workerSpans(broken.data.jobId).length === 2,
        30_000,
      );
    } finally {
      await receiver.close();
    }

    const delivery = deliverySpan(ok.data.jobId) as ReadableSpan;
    const [handled] = workerSpans(ok.data.jobId) as [ReadableSpan];
    expect(handled.links).toHaveLength(1);
    expect(handled.links[0]?.context.traceId).toBe(delivery.spanContext().traceId);
    expect(handled.links[0]?.context.spanId).toBe(delivery.spanContext().spanId);
    expect(handled.attributes).toMatchObject({
      [ATTR.MESSAGING_SYSTEM]: "mappa",
      [ATTR.EVENT_TYPE]: "report.completed",
      [ATTR.JOB_ID]: ok.data.jobId,
      [ATTR.OUTCOME]: "handled",
      [ATTR.HANDOFF]: "postgres-inbox",
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
    const [, last] = workerSpans(broken.data.jobId) as [ReadableSpan, ReadableSpan];
    expect(last.status.code).toBe(SpanStatusCode.ERROR);
    expect(last.attributes).toMatchObject({
      [ATTR.OUTCOME]: "failed",
      [ATTR.ERROR_TYPE]: "handler_failed",
      [ATTR.WILL_RETRY]: false,
      [ATTR.ATTEMPT]: 2,
    });
    expect((await getEvent({ pool: db.pool, schema: db.schema }, keyOf(broken)))?.status).toBe(
      "failed",
    );

    // Logs: one error line per failed attempt (1 + 2), naming the event and the fix; nothing
    // for the successes at the default level; never the body.
    const errors = logger.lines.filter((l) => l.level === "error").map((l) => l.line);
    expect(errors, errors.join("\n")).toHaveLength(3);
    expect(logger.lines.filter((l) => l.level !== "error")).toEqual([]);
    const flakyLines = errors.filter((line) => line.includes(keyOf(flaky)));
    expect(flakyLines).toHaveLength(1);
    expect(flakyLines[0]).toMatch(
      /^@mappa-webhooks\/postgres: event .* \(report\.completed\) attempt 1 of 2 failed, handler_failed: .*the report store was busy.*Retried in 0 ms; fix the handler/,
    );
    const brokenLines = errors.filter((line) => line.includes(keyOf(broken)));
    expect(brokenLines).toHaveLength(2);
    expect(brokenLines[1]).toMatch(/attempt 2 of 2 failed.*parked as failed.*replay/);
    for (const line of errors) expect(line).not.toContain(secretNote);
  });

  it("logs handled events at info when asked, and nothing with logger: false", async () => {
    const own = await createTestDatabase("telemetry_logs");
    const inbox = createInbox({ pool: own.pool, schema: own.schema });
    const startWorker = (options: Omit<InboxWorkerOptions, "pool" | "schema">) =>
      createInboxWorker({ pool: own.pool, schema: own.schema, pollIntervalMs: 50, ...options });
    const spies = (["debug", "info", "warn", "error"] as const).map((level) =>
      vi.spyOn(console, level).mockImplementation(() => {}),
    );
    const info = recordingLogger();
    const done = createTestEvent("matching.completed");
    await inbox.store(parseEvent(JSON.stringify(done)));
    const chatty = startWorker({ logger: info, logLevel: "info", on: {} });
    await waitFor(() => info.lines.length >= 1, 20_000);
    await chatty.close();
    expect(info.lines).toEqual([
      { level: "info", line: expect.stringMatching(/event .* \(matching\.completed\) handled/) },
    ]);

    const failing = createTestEvent("matching.failed");
    await inbox.store(parseEvent(JSON.stringify(failing)));
    const silent = startWorker({
      logger: false,
      maxAttempts: 1,
      on: {
        "matching.failed": () => {
          throw new Error("always");
        },
      },
    });
    await waitFor(() => silent.stats.failed === 1, 20_000);
    await silent.close();
    await own.drop();
    for (const spy of spies) {
      const ours = spy.mock.calls.filter((call) => String(call[0]).includes("@mappa-webhooks"));
      expect(ours).toEqual([]);
    }
  });

  it("reports the events table's pending, failed and oldest pending age as backlog gauges", async () => {
    const reader = new CollectingReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    const instrumentation = openTelemetry({ tracerProvider, meterProvider });
    const fresh = await createTestDatabase("backlog");
    const inbox = createInbox({ pool: fresh.pool, schema: fresh.schema });
    const events = [
      createTestEvent("report.completed"),
      createTestEvent("report.completed"),
      createTestEvent("report.completed"),
    ];
    let worker: InboxWorker | undefined;
    try {
      // Only observed while the worker runs: one that polls rarely, so nothing is taken yet.
      const idle = createInboxWorker({
        pool: fresh.pool,
        schema: fresh.schema,
        instrumentation,
        logger: false,
        listen: false,
        concurrency: 1,
        pollIntervalMs: 600_000,
      });
      await idle.ready;
      // Let its first look (at an empty table) pass.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const empty = (await reader.collect()).resourceMetrics;
      expect(gauge(empty, METRIC.BACKLOG_PENDING, "postgres-inbox")).toBe(0);
      expect(gauge(empty, METRIC.BACKLOG_OLDEST_AGE, "postgres-inbox")).toBe(0);

      for (const event of events) await inbox.store(parseEvent(JSON.stringify(event)));
      // The oldest was received two minutes ago.
      await fresh.pool.query(
        `UPDATE "${fresh.schema}".events SET received_at = now() - interval '120 seconds' WHERE key = $1`,
        [keyOf(events[0])],
      );
      const waiting = (await reader.collect()).resourceMetrics;
      expect(gauge(waiting, METRIC.BACKLOG_PENDING, "postgres-inbox")).toBe(3);
      expect(gauge(waiting, METRIC.BACKLOG_FAILED, "postgres-inbox")).toBe(0);
      const age = gauge(waiting, METRIC.BACKLOG_OLDEST_AGE, "postgres-inbox") as number;
      expect(age).toBeGreaterThanOrEqual(119);
      expect(age).toBeLessThan(600);
      // The same numbers, read directly.
      const direct = await readBacklog({ pool: fresh.pool, schema: fresh.schema });
      expect(direct).toMatchObject({ pending: 3, failed: 0 });
      expect(direct.oldestPendingAgeSec).toBeGreaterThanOrEqual(119);
      await idle.close();

      worker = createInboxWorker({
        pool: fresh.pool,
        schema: fresh.schema,
        instrumentation,
        logger: false,
        maxAttempts: 1,
        pollIntervalMs: 50,
        on: {
          "report.completed": () => {
            throw new Error("parked");
          },
        },
      });
      const running = worker;
      await waitFor(() => running.stats.failed === 3, 30_000);
      const parked = (await reader.collect()).resourceMetrics;
      expect(gauge(parked, METRIC.BACKLOG_PENDING, "postgres-inbox")).toBe(0);
      expect(gauge(parked, METRIC.BACKLOG_FAILED, "postgres-inbox")).toBe(3);
      expect(gauge(parked, METRIC.BACKLOG_OLDEST_AGE, "postgres-inbox")).toBe(0);
    } finally {
      await worker?.close();
      await meterProvider.shutdown();
      await fresh.drop();
    }
  });

  it("migrate adds the trace_context column to a schema 1 events table, keeping its rows", async () => {
    const fresh = await createTestDatabase("trace_v1", { migrate: false });
    const { pool, schema } = fresh;
    try {
      // Schema 1 exactly: today's SQL without the trace context column and the tracked jobs
      // table, marked version 1.
      const v1 = schemaSql({ schema })
        .replace(/-- The trace context[\s\S]*?ADD COLUMN IF NOT EXISTS trace_context jsonb;\n/, "")
        .replace(/-- The jobs createMappaRecovery tracks[\s\S]*?\n\);\n/, "")
        .replace(/schema 2';/, "schema 1';");
      expect(v1).not.toContain("trace_context");
      await pool.query(v1);
      const old = createTestEvent("report.completed");
      await pool.query(
        `INSERT INTO "${schema}".events (key, event_id, type, payload) VALUES ($1, $2, $3, $4::json)`,
        [keyOf(old), old.id, old.type, JSON.stringify(old)],
      );

      await migrate({ pool, schema });
      const column = await pool.query(
        `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = to_regclass($1) AND attname = 'trace_context' AND NOT attisdropped`,
        [`"${schema}".events`],
      );
      expect(column.rows).toEqual([{ type: "jsonb" }]);
      // The old row has none; a worker handles it with a span without a link.
      exporter.reset();
      const worker = createInboxWorker({
        pool,
        schema,
        instrumentation: openTelemetry({ tracerProvider }),
        logger: false,
        pollIntervalMs: 50,
        on: { "report.completed": () => {} },
      });
      try {
        await waitFor(() => worker.stats.done === 1, 20_000);
      } finally {
        await worker.close();
      }
      const [span] = workerSpans(old.data.jobId) as [ReadableSpan];
      expect(span.attributes[ATTR.OUTCOME]).toBe("handled");
      expect(span.links).toEqual([]);
      // Running it again changes nothing.
      await migrate({ pool, schema });
    } finally {
      await fresh.drop();
    }
  });
});
