import type { OutgoingHttpHeaders } from "node:http";
import { type MappaEvent, signPayload } from "@mappa-webhooks/core";
import { openTelemetry } from "@mappa-webhooks/opentelemetry";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
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
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { send } from "./http.js";

/** The part of the suite's factory this case uses (the suite's own `ConformanceFactory`). */
type Factory = (
  options: import("@mappa-webhooks/core").MappaWebhooksOptions<unknown>,
) => Promise<{ webhookUrl: string; close(): Promise<void> }>;

const SECRET = "whsec_conformance_telemetry_3f1a";
const OCCURRED_AT = "2026-01-17T12:05:00.000Z";

/** A metric reader collected on demand: the SDK's in-memory way to read what was recorded. */
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

let counter = 0;
function freshId(label: string): string {
  counter += 1;
  return `evt_otel_${label}_${Date.now().toString(36)}_${counter}`;
}

function event(id: string): string {
  return JSON.stringify({
    id,
    type: "report.completed",
    createdAt: OCCURRED_AT,
    timestamp: OCCURRED_AT,
    data: { jobId: `job_${id}`, reportId: `rep_${id}`, status: "succeeded" },
  });
}

async function signed(body: string, timestamp = Math.floor(Date.now() / 1000)) {
  const headers: OutgoingHttpHeaders = {
    "content-type": "application/json",
    "mappa-signature": await signPayload({ payload: body, secret: SECRET, timestamp }),
  };
  return headers;
}

/** Sums the points of one metric matching `attributes` (counter value or histogram count). */
function pointsOf(
  collected: ResourceMetrics,
  name: string,
  attributes: Record<string, string>,
): number {
  let total = 0;
  for (const scope of collected.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== name) continue;
      for (const point of metric.dataPoints as DataPoint<number | Histogram>[]) {
        const matches = Object.entries(attributes).every(([k, v]) => point.attributes[k] === v);
        if (!matches) continue;
        total += typeof point.value === "number" ? point.value : point.value.count;
      }
    }
  }
  return total;
}

/**
 * Telemetry over real HTTP through the adapter: the real OpenTelemetry SDK (in-memory span
 * exporter, a metric reader collected on demand) and the receiver's logger, for a valid
 * delivery, a duplicate, a forged and a stale one, a handler failure and an event in flight.
 */
export function describeTelemetry(factory: Factory): void {
  describe("telemetry (OpenTelemetry SDK, logger)", () => {
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const reader = new CollectingReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    const lines: Array<{ level: string; message: string }> = [];
    const logger = {
      debug: (message: string) => lines.push({ level: "debug", message }),
      info: (message: string) => lines.push({ level: "info", message }),
      warn: (message: string) => lines.push({ level: "warn", message }),
      error: (message: string) => lines.push({ level: "error", message }),
    };
    const gates = new Map<string, Promise<void>>();
    let app: Awaited<ReturnType<Factory>> | undefined;
    const url = () => (app as NonNullable<typeof app>).webhookUrl;

    beforeAll(async () => {
      app = await factory({
        secret: SECRET,
        logger,
        instrumentation: openTelemetry({ tracerProvider, meterProvider }),
        on: {
          "report.completed": async (e: MappaEvent) => {
            const gate = gates.get(e.id ?? "");
            if (gate !== undefined) await gate;
            if (e.id?.includes("_fail_")) throw new Error(`planned failure of ${e.id}`);
          },
        },
      });
    });
    afterAll(async () => {
      await app?.close();
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
    });
    beforeEach(() => {
      exporter.reset();
      lines.length = 0;
    });

    const deliverySpans = () =>
      exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CONSUMER);
    const childrenOf = (span: ReadableSpan) =>
      exporter
        .getFinishedSpans()
        .filter((s) => s.parentSpanContext?.spanId === span.spanContext().spanId)
        .map((s) => s.name);
    const oneDelivery = async (): Promise<ReadableSpan> => {
      await waitFor(() => deliverySpans().length >= 1);
      const spans = deliverySpans();
      expect(spans).toHaveLength(1);
      return spans[0] as ReadableSpan;
    };

    it("traces a valid delivery: a CONSUMER span with its steps, counted, timed and its lag", async () => {
      const id = freshId("ok");
      const body = event(id);
      const before = await reader.collect();
      const response = await send(url(), { headers: await signed(body), body });
      expect(response.status).toBe(200);
      const span = await oneDelivery();
      expect(span.name).toBe("process report.completed");
      expect(span.attributes).toMatchObject({
        "messaging.system": "mappa",
        "messaging.operation.type": "process",
        "messaging.message.id": id,
        "mappa.event.type": "report.completed",
        "mappa.job.id": `job_${id}`,
        "mappa.webhook.outcome": "handled",
      });
      expect(span.attributes["error.type"]).toBeUndefined();
      expect(span.status.code).not.toBe(SpanStatusCode.ERROR);
      // One handler span per handler run (an adapter may add listeners of its own).
      expect([...new Set(childrenOf(span))].sort()).toEqual([
        "mappa.webhook.claim",
        "mappa.webhook.handler",
        "mappa.webhook.verify",
      ]);
      const after = await reader.collect();
      const handled = {
        "mappa.webhook.outcome": "handled",
        "mappa.event.type": "report.completed",
      };
      expect(
        pointsOf(after.resourceMetrics, "mappa.webhook.deliveries", handled) -
          pointsOf(before.resourceMetrics, "mappa.webhook.deliveries", handled),
      ).toBe(1);
      expect(
        pointsOf(after.resourceMetrics, "messaging.process.duration", handled) -
          pointsOf(before.resourceMetrics, "messaging.process.duration", handled),
      ).toBe(1);
      const lag = { "mappa.event.type": "report.completed" };
      expect(
        pointsOf(after.resourceMetrics, "mappa.webhook.lag", lag) -
          pointsOf(before.resourceMetrics, "mappa.webhook.lag", lag),
      ).toBe(1);
      // Nothing is logged for a success at the default level.
      expect(lines).toEqual([]);
    });

    it("marks a duplicate, without a handler span", async () => {
      const id = freshId("dup");
      const body = event(id);
      expect((await send(url(), { headers: await signed(body), body })).status).toBe(200);
      await waitFor(() => deliverySpans().length >= 1);
      exporter.reset();
      const again = await send(url(), { headers: await signed(body), body });
      expect(again.status).toBe(200);
      const span = await oneDelivery();
      expect(span.attributes["mappa.webhook.outcome"]).toBe("duplicate");
      expect(childrenOf(span)).not.toContain("mappa.webhook.handler");
      expect(lines).toEqual([]);
    });

    it.each([
      { label: "a forged body", code: "signature_mismatch", stale: false },
      { label: "a stale timestamp", code: "timestamp_outside_tolerance", stale: true },
    ])("rejects $label: error.type $code, status ERROR, one warn line", async ({ code, stale }) => {
      const id = freshId("bad");
      const body = event(id);
      const headers = await signed(body, Math.floor(Date.now() / 1000) - (stale ? 3600 : 0));
      const sent = stale ? body : body.replace("rep_", "rex_");
      const response = await send(url(), { headers, body: sent });
      expect(response.status).toBe(401);
      const span = await oneDelivery();
      expect(span.attributes).toMatchObject({
        "mappa.webhook.outcome": "rejected",
        "error.type": code,
      });
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(childrenOf(span)).toEqual(["mappa.webhook.verify"]);
      await waitFor(() => lines.length >= 1);
      expect(lines).toHaveLength(1);
      const [line] = lines;
      expect(line?.level).toBe("warn");
      expect(line?.message).toContain(`401 ${code}`);
      expect(line?.message).not.toContain(SECRET);
      expect(line?.message).not.toContain(`rep_${id}`);
      expect(line?.message).not.toContain(`rex_${id}`);
      const metrics = await reader.collect();
      expect(
        pointsOf(metrics.resourceMetrics, "mappa.webhook.deliveries", {
          "mappa.webhook.outcome": "rejected",
          "error.type": code,
        }),
      ).toBeGreaterThanOrEqual(1);
    });

    it("fails a delivery whose handler throws: handler_failed, an ERROR handler span, one error line", async () => {
      const id = freshId("fail");
      const body = event(id);
      const response = await send(url(), { headers: await signed(body), body });
      expect(response.status).toBe(500);
      const span = await oneDelivery();
      expect(span.attributes).toMatchObject({
        "mappa.webhook.outcome": "failed",
        "error.type": "handler_failed",
        "messaging.message.id": id,
      });
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      const handler = exporter
        .getFinishedSpans()
        .find((s) => s.name === "mappa.webhook.handler") as ReadableSpan;
      expect(handler.status.code).toBe(SpanStatusCode.ERROR);
      expect(handler.events.some((e) => e.name === "exception")).toBe(true);
      await waitFor(() => lines.length >= 1);
      expect(lines.map((l) => l.level)).toEqual(["error"]);
      expect(lines[0]?.message).toContain(`500 handler_failed (report.completed ${id})`);
      expect(lines[0]?.message).toContain(`planned failure of ${id}`);
    });

    it("marks the copy that arrives while the first is handled in_flight", async () => {
      const id = freshId("slow");
      let release = () => {};
      gates.set(id, new Promise<void>((resolve) => (release = resolve)));
      const body = event(id);
      const headers = await signed(body);
      const first = send(url(), { headers, body });
      // The first copy holds the claim once its handler span started.
      await waitFor(() =>
        exporter.getFinishedSpans().some((s) => s.name === "mappa.webhook.claim"),
      );
      const second = await send(url(), { headers, body });
      expect(second.status).toBe(409);
      release();
      expect((await first).status).toBe(200);
      await waitFor(() => deliverySpans().length >= 2);
      const outcomes = deliverySpans().map((s) => s.attributes["mappa.webhook.outcome"]);
      expect(outcomes.sort()).toEqual(["handled", "in_flight"]);
      const inFlight = deliverySpans().find(
        (s) => s.attributes["mappa.webhook.outcome"] === "in_flight",
      ) as ReadableSpan;
      expect(inFlight.attributes["error.type"]).toBe("event_in_flight");
      // A 409 is not this receiver's failure: info, hidden at the default level.
      expect(lines).toEqual([]);
    });
  });
}
