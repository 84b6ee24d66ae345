// The receiver's own cost of instrumentation, without HTTP: the time of one `handle()` per
// delivery (1 KiB event, idempotency off), instrumentation off, `openTelemetry()` without an SDK
// and with the SDK recording (in-memory exporter, a metric reader), and, with BENCH_BEFORE_CORE
// set (another core build's dist/node/index.js), that build with instrumentation off. Variants
// alternate in one process, 3000 deliveries each per round, the first variant rotating; the
// first 5 rounds warm up; the result is the median time and the median per-round ratio to off.
//
//   node instrumentation/inprocess.mjs
import { createMappaWebhooks } from "@mappa-webhooks/core";
import { openTelemetry } from "@mappa-webhooks/opentelemetry";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { createEventBody, SECRET, signBody } from "../lib/fixtures.mjs";
import { median } from "../lib/stats.mjs";

const before = process.env.BENCH_BEFORE_CORE
  ? await import(process.env.BENCH_BEFORE_CORE)
  : undefined;
class R extends MetricReader {
  async onShutdown() {}
  async onForceFlush() {}
}
const exporter = new InMemorySpanExporter();
const sdk = openTelemetry({
  tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  meterProvider: new MeterProvider({ readers: [new R()] }),
});
const base = {
  secret: SECRET,
  idempotency: false,
  logger: false,
  on: { "report.completed": () => {} },
};
const variants = {
  ...(before === undefined ? {} : { before: before.createMappaWebhooks(base) }),
  off: createMappaWebhooks(base),
  nosdk: createMappaWebhooks({ ...base, instrumentation: openTelemetry() }),
  sdk: createMappaWebhooks({ ...base, instrumentation: sdk }),
};
const body = Buffer.from(createEventBody(1024));
const input = {
  method: "POST",
  headers: {
    "content-type": "application/json",
    "mappa-signature": await signBody(body.toString()),
  },
  rawBody: body,
};
for (const w of Object.values(variants))
  if ((await w.handle(input)).status !== 200) throw new Error("not 200");
const N = 3000;
const rounds = [];
for (let r = 0; r < 30; r++) {
  const names = Object.keys(variants);
  const order = names.slice(r % names.length).concat(names.slice(0, r % names.length));
  const t = {};
  for (const name of order) {
    const w = variants[name];
    const start = process.hrtime.bigint();
    for (let i = 0; i < N; i++) await w.handle(input);
    t[name] = Number(process.hrtime.bigint() - start) / N / 1000;
    exporter.reset();
  }
  if (r >= 5) rounds.push(t);
}
for (const name of Object.keys(variants)) {
  const us = median(rounds.map((t) => t[name]));
  const ratio = median(rounds.map((t) => t.off / t[name]));
  console.log(
    `${name.padEnd(7)} ${us.toFixed(2)} µs/delivery  throughput vs off ${ratio.toFixed(3)}×`,
  );
}
