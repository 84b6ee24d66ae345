// One server of the instrumentation benchmark: `node instrumentation/server.mjs <framework> <variant>`.
// Frameworks: `express` (the adapter) and `node` (node:http straight into the core's `handle`,
// where the receiver's own cost is the largest share). Variants:
//   off     no instrumentation option
//   before  (node only) `off` on the core build at BENCH_BEFORE_CORE, when set
//   nosdk   instrumentation: openTelemetry(), no OpenTelemetry SDK registered (the API's no-ops)
//   sdk     openTelemetry() with the SDK: an in-memory span exporter (cleared every second) and a
//           MeterProvider with a reader, so every span, child span and metric is really recorded
// Reports `{ type: "ready", port }` over IPC and exits when the parent disconnects.
import { createServer } from "node:http";
import { createMappaWebhooks, readBodyWithLimit } from "@mappa-webhooks/core";
import { mappaWebhook } from "@mappa-webhooks/express";
import { openTelemetry } from "@mappa-webhooks/opentelemetry";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import express from "express";
import { SECRET, WEBHOOK_PATH } from "../lib/fixtures.mjs";

const [framework, variant] = process.argv.slice(2);

class CollectingReader extends MetricReader {
  async onShutdown() {}
  async onForceFlush() {}
}

function instrumentation() {
  if (variant === "off" || variant === "before") return {};
  if (variant === "nosdk") return { instrumentation: openTelemetry() };
  const exporter = new InMemorySpanExporter();
  // An in-memory exporter keeps every span: cleared so a long run measures recording, not growth.
  setInterval(() => exporter.reset(), 1000).unref();
  const tracerProvider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const reader = new CollectingReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  setInterval(() => void reader.collect(), 1000).unref();
  return { instrumentation: openTelemetry({ tracerProvider, meterProvider }) };
}

const options = {
  secret: SECRET,
  // Every request carries the same event: deduplication off so each runs the whole pipeline.
  idempotency: false,
  logger: false,
  on: { "report.completed": () => {} },
  ...instrumentation(),
};

let server;
if (framework === "express") {
  const app = express();
  app.use(mappaWebhook(options));
  server = createServer(app);
} else if (framework === "node") {
  // `before`: the same server on another build of the core (BENCH_BEFORE_CORE, a path to its
  // dist/node/index.js), e.g. the commit before the observability work, for a before/after ratio.
  const create =
    variant === "before"
      ? (await import(process.env.BENCH_BEFORE_CORE)).createMappaWebhooks
      : createMappaWebhooks;
  const webhooks = create(options);
  server = createServer(async (req, res) => {
    let rawBody;
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
} else {
  throw new Error(`unknown framework ${framework}`);
}

server.listen(0, "127.0.0.1", () => {
  process.send?.({ type: "ready", port: server.address().port, path: WEBHOOK_PATH });
});
process.on("disconnect", () => process.exit(0));
