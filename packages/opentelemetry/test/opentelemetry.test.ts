import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import {
  createMappaWebhooks,
  type MappaEvent,
  type MappaWebhooksOptions,
  parseEvent,
  readBodyWithLimit,
  signPayload,
} from "@mappa-webhooks/core";
import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import {
  type DataPoint,
  type Histogram,
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
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTelemetry, spanContextFromCarrier } from "../src/index.js";

const SECRET = "whsec_otel_package_test_91d2";
const OCCURRED_AT = "2026-01-17T12:05:00.000Z";

class CollectingReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
async function waitFor(check: () => boolean, timeoutMs = 20_000): Promise<void> {
  for (let waited = 0; waited <= timeoutMs; waited += 10) {
    if (check()) return;
    await sleep(10);
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

function eventBody(id: string): string {
  return JSON.stringify({
    id,
    type: "report.completed",
    createdAt: OCCURRED_AT,
    timestamp: OCCURRED_AT,
    data: { jobId: `job_${id}`, reportId: `rep_${id}`, status: "succeeded" },
  });
}

async function post(url: string, body: string, tamper = false): Promise<number> {
  const signature = await signPayload({
    payload: body,
    secret: SECRET,
    timestamp: Math.floor(Date.now() / 1000),
  });
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "mappa-signature": signature },
    body: tamper ? body.replace("rep_", "rex_") : body,
  });
  await response.text();
  return response.status;
}

function value(collected: ResourceMetrics, name: string, attributes: Record<string, unknown>) {
  let total: number | undefined;
  for (const scope of collected.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== name) continue;
      for (const point of metric.dataPoints as DataPoint<number | Histogram>[]) {
        if (!Object.entries(attributes).every(([k, v]) => point.attributes[k] === v)) continue;
        const v = typeof point.value === "number" ? point.value : point.value.count;
        total = (total ?? 0) + v;
      }
    }
  }
  return total;
}

/** A node:http server with the core's receiver on POST /webhooks/mappa, on 127.0.0.1:0. */
async function startApp(options: MappaWebhooksOptions) {
  const webhooks = createMappaWebhooks(options);
  const server: Server = createServer(async (req, res) => {
    let rawBody: Uint8Array;
    try {
      rawBody = await readBodyWithLimit(req, webhooks.maxBodyBytes);
    } catch (error) {
      const answer = webhooks.errorResponse(error);
      res.writeHead(answer.status, answer.headers).end(answer.body);
      return;
    }
    const answer = await webhooks.handle({
      method: req.method ?? "GET",
      headers: req.headers,
      rawBody,
    });
    res.writeHead(answer.status, answer.headers).end(answer.body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/mappa`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// Runs first: nothing is registered yet, as in an app without an SDK.
describe("without an OpenTelemetry SDK", () => {
  it("receives as usual, and carries no trace context", async () => {
    const instrumentation = openTelemetry();
    let injected: unknown = "not called";
    const app = await startApp({
      secret: SECRET,
      logger: false,
      instrumentation,
      on: {
        "report.completed": () => {
          injected = instrumentation.inject?.();
        },
      },
    });
    try {
      expect(await post(app.url, eventBody("evt_nosdk_1"))).toBe(200);
      expect(await post(app.url, eventBody("evt_nosdk_2"), true)).toBe(401);
      expect(injected).toBeUndefined();
      const scope = instrumentation.startDelivery({ method: "POST", startedAt: Date.now() });
      expect(scope?.carrier()).toBeUndefined();
      scope?.end({ outcome: "handled", status: 200, durationMs: 1 });
    } finally {
      await app.close();
    }
  });
});

describe("with the SDK and the HTTP instrumentation", () => {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const reader = new CollectingReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const contextManager = new AsyncLocalStorageContextManager();
  let unregister = () => {};

  beforeAll(() => {
    context.setGlobalContextManager(contextManager.enable());
    trace.setGlobalTracerProvider(tracerProvider);
    unregister = registerInstrumentations({
      tracerProvider,
      instrumentations: [new HttpInstrumentation()],
    });
    // The instrumentation patches `http` when it is required: the servers below use it.
    createRequire(import.meta.url)("node:http");
  });
  afterAll(async () => {
    unregister();
    trace.disable();
    context.disable();
    propagation.disable();
    await tracerProvider.shutdown();
    await meterProvider.shutdown();
  });

  it("makes the delivery span a child of the HTTP server span, and a handler's own span a child of its handler span", async () => {
    exporter.reset();
    const instrumentation = openTelemetry({ meterProvider });
    let injected: Record<string, string> | undefined;
    const app = await startApp({
      secret: SECRET,
      logger: false,
      instrumentation,
      on: {
        "report.completed": async () => {
          injected = instrumentation.inject?.();
          trace.getTracer("app").startSpan("save report").end();
        },
      },
    });
    try {
      expect(await post(app.url, eventBody("evt_http_1"))).toBe(200);
      await waitFor(() => exporter.getFinishedSpans().some((s) => s.kind === SpanKind.SERVER));
      const spans = exporter.getFinishedSpans();
      const server = spans.find((s) => s.kind === SpanKind.SERVER) as ReadableSpan;
      const delivery = spans.find((s) => s.kind === SpanKind.CONSUMER) as ReadableSpan;
      const handler = spans.find((s) => s.name === "mappa.webhook.handler") as ReadableSpan;
      const own = spans.find((s) => s.name === "save report") as ReadableSpan;
      expect(server.attributes["http.method"] ?? server.attributes["http.request.method"]).toBe(
        "POST",
      );
      expect(delivery.spanContext().traceId).toBe(server.spanContext().traceId);
      expect(delivery.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
      expect(handler.parentSpanContext?.spanId).toBe(delivery.spanContext().spanId);
      expect(own.parentSpanContext?.spanId).toBe(handler.spanContext().spanId);
      expect(injected?.traceparent).toBe(
        `00-${handler.spanContext().traceId}-${handler.spanContext().spanId}-01`,
      );
    } finally {
      await app.close();
    }
  });

  it("carries the delivery's context into a storing claim (outcome stored), and the worker's span links to it", async () => {
    exporter.reset();
    let nowMs = Date.parse(OCCURRED_AT) + 90_000;
    const instrumentation = openTelemetry({ meterProvider, now: () => nowMs });
    const stored = new Map<string, { event: MappaEvent; carrier?: Record<string, string> }>();
    const app = await startApp({
      secret: SECRET,
      logger: false,
      instrumentation,
      idempotency: {
        async claim(key, options) {
          if (stored.has(key)) return { status: "completed" };
          const entry: { event: MappaEvent; carrier?: Record<string, string> } = {
            event: options.event as MappaEvent,
          };
          if (options.traceContext !== undefined) entry.carrier = { ...options.traceContext };
          stored.set(key, entry);
          return { status: "claimed", token: key, stored: true };
        },
        async complete() {},
        async release() {},
      },
    });
    try {
      const before = await reader.collect();
      expect(await post(app.url, eventBody("evt_store_1"))).toBe(200);
      await waitFor(() => exporter.getFinishedSpans().some((s) => s.kind === SpanKind.CONSUMER));
      const delivery = exporter
        .getFinishedSpans()
        .find((s) => s.kind === SpanKind.CONSUMER) as ReadableSpan;
      expect(delivery.attributes["mappa.webhook.outcome"]).toBe("stored");
      // The one event stored (whatever key the core gives it).
      const row = [...stored.values()][0];
      expect(row?.carrier?.traceparent).toBe(
        `00-${delivery.spanContext().traceId}-${delivery.spanContext().spanId}-01`,
      );

      // A worker, later and in no request: its span links to the delivery that stored the event.
      exporter.reset();
      nowMs += 30_000;
      const startedAt = Date.now();
      const processing = instrumentation.startProcess?.({
        handoff: "postgres-inbox",
        event: parseEvent(JSON.stringify(row?.event.raw)),
        ...(row?.carrier === undefined ? {} : { carrier: row.carrier }),
        attempt: 1,
        recovered: false,
        startedAt,
      });
      const step = processing?.step("handler", "report.completed");
      step?.run(() => trace.getTracer("app").startSpan("worker write").end());
      step?.end();
      processing?.end({ outcome: "handled", durationMs: 12 });
      const spans = exporter.getFinishedSpans();
      const worker = spans.find((s) => s.name === "process report.completed") as ReadableSpan;
      expect(worker.kind).toBe(SpanKind.CONSUMER);
      expect(worker.links.map((l) => l.context.spanId)).toEqual([delivery.spanContext().spanId]);
      expect(worker.attributes).toMatchObject({
        "messaging.system": "mappa",
        "messaging.operation.type": "process",
        "messaging.message.id": "evt_store_1",
        "mappa.webhook.handoff": "postgres-inbox",
        "mappa.webhook.recovered": false,
        "mappa.webhook.outcome": "handled",
      });
      const write = spans.find((s) => s.name === "worker write") as ReadableSpan;
      const handler = spans.find((s) => s.name === "mappa.webhook.handler") as ReadableSpan;
      expect(handler.parentSpanContext?.spanId).toBe(worker.spanContext().spanId);
      expect(write.parentSpanContext?.spanId).toBe(handler.spanContext().spanId);

      const after = await reader.collect();
      const storedPoints = { "mappa.webhook.outcome": "stored" };
      expect(
        (value(after.resourceMetrics, "mappa.webhook.deliveries", storedPoints) ?? 0) -
          (value(before.resourceMetrics, "mappa.webhook.deliveries", storedPoints) ?? 0),
      ).toBe(1);
      expect(
        value(after.resourceMetrics, "mappa.webhook.processed", {
          "mappa.webhook.handoff": "postgres-inbox",
          "mappa.webhook.outcome": "handled",
        }),
      ).toBe(1);
      // 90 s after occurredAt at the receiver, 120 s at the worker (the injected clock).
      const lag = after.resourceMetrics.scopeMetrics
        .flatMap((s) => s.metrics)
        .find((m) => m.descriptor.name === "mappa.webhook.lag");
      const sums = ((lag?.dataPoints ?? []) as DataPoint<Histogram>[]).map((p) => [
        p.attributes["mappa.webhook.handoff"] ?? "receiver",
        p.value.sum,
      ]);
      expect(sums).toContainEqual(["postgres-inbox", 120]);
      expect(sums.find(([where]) => where === "receiver")?.[1]).toBeGreaterThanOrEqual(90);
    } finally {
      await app.close();
    }
  });

  it("observes backlog gauges while registered", async () => {
    const instrumentation = openTelemetry({ meterProvider });
    let reads = 0;
    const remove = instrumentation.observeBacklog?.({
      handoff: "bullmq",
      read: async () => {
        reads += 1;
        return { pending: 7, failed: 2, oldestPendingAgeSec: 42 };
      },
    });
    const collected = await reader.collect();
    const on = { "mappa.webhook.handoff": "bullmq" };
    expect(value(collected.resourceMetrics, "mappa.webhook.backlog.pending", on)).toBe(7);
    expect(value(collected.resourceMetrics, "mappa.webhook.backlog.failed", on)).toBe(2);
    expect(value(collected.resourceMetrics, "mappa.webhook.backlog.oldest_age", on)).toBe(42);
    expect(reads).toBe(1);
    remove?.();
    await reader.collect();
    // Removed: its backlog is no longer read.
    expect(reads).toBe(1);
  });
});

describe("openTelemetry options and carriers", () => {
  it.each([
    { label: "a tracer provider without getTracer", options: { tracerProvider: {} } },
    { label: "a meter provider without getMeter", options: { meterProvider: {} } },
  ])("rejects $label with a message saying what to pass", ({ options }) => {
    expect(() => openTelemetry(options as never)).toThrow(
      /^@mappa-webhooks\/opentelemetry: `(tracerProvider|meterProvider)` must have/,
    );
  });

  it.each([
    { label: "nothing", carrier: undefined },
    { label: "no traceparent", carrier: { tracestate: "a=b" } },
    { label: "a garbled traceparent", carrier: { traceparent: "00-xyz-abc-01" } },
    {
      label: "an all-zero trace id",
      carrier: { traceparent: `00-${"0".repeat(32)}-${"1".repeat(16)}-01` },
    },
    { label: "version ff", carrier: { traceparent: `ff-${"a".repeat(32)}-${"1".repeat(16)}-01` } },
  ])("finds no span context in $label", ({ carrier }) => {
    expect(spanContextFromCarrier(carrier)).toBeUndefined();
  });

  it("reads a stored traceparent back as a remote span context", () => {
    expect(
      spanContextFromCarrier({
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      }),
    ).toEqual({
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "b7ad6b7169203331",
      traceFlags: 1,
      isRemote: true,
    });
  });
});
