// An Express app receiving Mappa webhooks with OpenTelemetry: metrics scraped by Prometheus on
// GET /metrics, spans printed to the console. Register the SDK before the app handles traffic.

import { mappaWebhook } from "@mappa-webhooks/express";
import { openTelemetry } from "@mappa-webhooks/opentelemetry";
import { context, metrics, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import express from "express";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to your endpoint's signing secret (e.g. whsec_...).");
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

// 1. The SDK: metrics for Prometheus (served by this app on /metrics, below), spans to the
//    console, and a context manager so spans nest across awaits.
const prometheus = new PrometheusExporter({ preventServerStart: true });
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [prometheus] }));
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(
  new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())] }),
);

const app = express();

// 2. The receiver: `instrumentation: openTelemetry()` uses the global providers set above.
//    Rejected and failed deliveries are logged by default (console.warn / console.error).
app.use(
  mappaWebhook({
    secret,
    instrumentation: openTelemetry(),
    on: {
      "report.completed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} report=${event.data.reportId}`,
        );
      },
      "report.failed": (event) => {
        console.log(
          `[mappa] ${event.type} ${event.id ?? event.idempotencyKey} error=${event.data.error.code}`,
        );
      },
    },
  }),
);

// 3. Prometheus scrapes this.
app.get("/metrics", (req, res) => prometheus.getMetricsRequestHandler(req, res));

const server = app.listen(port, host, () => {
  const address = server.address();
  const actual = typeof address === "object" && address !== null ? address.port : port;
  console.log(`listening on http://${host}:${actual}`);
  console.log(`metrics on http://${host}:${actual}/metrics`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
