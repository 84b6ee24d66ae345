import type {
  MappaBacklog,
  MappaBacklogSource,
  MappaDeliveryEnd,
  MappaDeliveryScope,
  MappaDeliveryStart,
  MappaDeliveryStep,
  MappaEvent,
  MappaInstrumentation,
  MappaProcessEnd,
  MappaProcessScope,
  MappaProcessStart,
  MappaStepScope,
  MappaTraceCarrier,
} from "@mappa-webhooks/core";
import {
  type Attributes,
  type Context,
  type Counter,
  context as contextApi,
  createNoopMeter,
  type Histogram,
  isSpanContextValid,
  type Link,
  type Meter,
  type MeterProvider,
  metrics,
  type ObservableGauge,
  propagation,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  type TracerProvider,
  trace,
} from "@opentelemetry/api";

/** The instrumentation scope name of every span and metric this package makes. */
export const INSTRUMENTATION_NAME = "@mappa-webhooks/opentelemetry";

/**
 * Attribute names this package sets. The `messaging.*` and `error.type` ones follow
 * OpenTelemetry's semantic conventions for messaging consumers; the `mappa.*` ones are its own.
 */
export const ATTR = {
  MESSAGING_SYSTEM: "messaging.system",
  MESSAGING_OPERATION_TYPE: "messaging.operation.type",
  MESSAGING_OPERATION_NAME: "messaging.operation.name",
  MESSAGING_DESTINATION_NAME: "messaging.destination.name",
  MESSAGING_MESSAGE_ID: "messaging.message.id",
  ERROR_TYPE: "error.type",
  EVENT_TYPE: "mappa.event.type",
  JOB_ID: "mappa.job.id",
  OUTCOME: "mappa.webhook.outcome",
  RECOVERED: "mappa.webhook.recovered",
  STATUS_CODE: "mappa.webhook.status_code",
  HANDOFF: "mappa.webhook.handoff",
  ATTEMPT: "mappa.webhook.attempt",
  WILL_RETRY: "mappa.webhook.will_retry",
} as const;

/** Metric names this package records. */
export const METRIC = {
  DELIVERIES: "mappa.webhook.deliveries",
  PROCESSED: "mappa.webhook.processed",
  PROCESS_DURATION: "messaging.process.duration",
  LAG: "mappa.webhook.lag",
  BACKLOG_PENDING: "mappa.webhook.backlog.pending",
  BACKLOG_FAILED: "mappa.webhook.backlog.failed",
  BACKLOG_OLDEST_AGE: "mappa.webhook.backlog.oldest_age",
} as const;

/** The destination every receiver's spans name: one logical channel of Mappa's webhooks. */
const DESTINATION = "mappa.webhook";
const STEP_NAMES: Record<MappaDeliveryStep, string> = {
  verify: "mappa.webhook.verify",
  claim: "mappa.webhook.claim",
  handler: "mappa.webhook.handler",
};

// The boundaries OpenTelemetry recommends for messaging.process.duration (seconds).
const DURATION_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
];
// Lag spans Mappa's retry schedule (~36 minutes) and recovery (hours or days).
const LAG_BUCKETS = [
  0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21_600, 86_400,
];

/**
 * Options of {@link openTelemetry}.
 *
 * @example
 * ```ts
 * const options: OpenTelemetryOptions = { attributes: { "service.component": "billing" } };
 * ```
 */
export interface OpenTelemetryOptions {
  /** Where spans go. Default: the global tracer provider (the one your SDK registered). */
  tracerProvider?: TracerProvider;
  /** Where metrics go. Default: the global meter provider (the one your SDK registered). */
  meterProvider?: MeterProvider;
  /** Attributes added to every span (not to metrics, to keep their cardinality down). */
  attributes?: Attributes;
  /** The clock in milliseconds for `mappa.webhook.lag`, for tests. Default `Date.now`. */
  now?: () => number;
}

interface Instruments {
  /** False for a no-op meter (no SDK registered): nothing is recorded, nothing is built. */
  live: boolean;
  deliveries: Counter;
  processed: Counter;
  duration: Histogram;
  lag: Histogram;
  meter: Meter;
}

const NOOP_METER_CLASS = Object.getPrototypeOf(createNoopMeter()) as object;

const NOOP_STEP: MappaStepScope = { run: (fn) => fn(), end: () => {} };

/** `error.type`: the error's code (`signature_mismatch`, `handler_failed`, ...), else its name. */
function errorType(error: unknown): string {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  if (typeof code === "string" && code !== "") return code;
  if (error instanceof Error && error.name !== "") return error.name;
  return "_OTHER";
}

/** `mappa.job.id`: `data.jobId` when the event has one. */
function jobIdOf(event: MappaEvent): string | undefined {
  const data = event.data as { jobId?: unknown } | null | undefined;
  return typeof data?.jobId === "string" ? data.jobId : undefined;
}

function eventAttributes(span: Span, event: MappaEvent): void {
  span.setAttribute(ATTR.EVENT_TYPE, event.type);
  const id = event.id ?? event.idempotencyKey;
  if (id !== undefined) span.setAttribute(ATTR.MESSAGING_MESSAGE_ID, id);
  const jobId = jobIdOf(event);
  if (jobId !== undefined) span.setAttribute(ATTR.JOB_ID, jobId);
  // Cores whose events say whether recovery built them (rather than a delivery from Mappa).
  const recovered = (event as { recovered?: unknown }).recovered;
  if (typeof recovered === "boolean") span.setAttribute(ATTR.RECOVERED, recovered);
}

const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})(?:-.*)?$/;

/** A span context as a W3C `traceparent` (and `tracestate`), whatever propagator is registered. */
function carrierOf(ctx: Context, spanContext: SpanContext): MappaTraceCarrier | undefined {
  if (!isSpanContextValid(spanContext)) return undefined;
  const carrier: MappaTraceCarrier = {};
  // The registered propagator first (it may add baggage or vendor headers), then W3C itself.
  propagation.inject(ctx, carrier);
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, "0");
  carrier.traceparent = `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
  const state = spanContext.traceState?.serialize();
  if (state !== undefined && state !== "") carrier.tracestate = state;
  return carrier;
}

/** The span context in a stored carrier, or `undefined` when it holds none (or a broken one). */
export function spanContextFromCarrier(
  carrier: Readonly<Record<string, unknown>> | null | undefined,
): SpanContext | undefined {
  const header = carrier?.traceparent;
  if (typeof header !== "string") return undefined;
  const match = TRACEPARENT.exec(header.trim().toLowerCase());
  if (match === null || match[1] === "ff") return undefined;
  const spanContext: SpanContext = {
    traceId: match[2] as string,
    spanId: match[3] as string,
    traceFlags: Number.parseInt(match[4] as string, 16) & 1,
    isRemote: true,
  };
  return isSpanContextValid(spanContext) ? spanContext : undefined;
}

class Telemetry {
  readonly tracer: Tracer;
  private instrumentsCache: Instruments | undefined;
  private readonly backlogSources = new Set<MappaBacklogSource>();
  private gauges: ObservableGauge[] | undefined;

  constructor(private readonly options: OpenTelemetryOptions) {
    this.tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(
      INSTRUMENTATION_NAME,
    );
  }

  now(): number {
    return this.options.now === undefined ? Date.now() : this.options.now();
  }

  get spanAttributes(): Attributes | undefined {
    return this.options.attributes;
  }

  /** Made on first use, so an SDK registered after `openTelemetry()` (but before traffic) counts. */
  instruments(): Instruments {
    if (this.instrumentsCache !== undefined) return this.instrumentsCache;
    const meter = (this.options.meterProvider ?? metrics.getMeterProvider()).getMeter(
      INSTRUMENTATION_NAME,
    );
    this.instrumentsCache = {
      live: Object.getPrototypeOf(meter) !== NOOP_METER_CLASS,
      meter,
      deliveries: meter.createCounter(METRIC.DELIVERIES, {
        description: "Mappa webhook deliveries received, by outcome and event type.",
        unit: "{delivery}",
      }),
      processed: meter.createCounter(METRIC.PROCESSED, {
        description:
          "Stored Mappa events processed by workers (Postgres inbox, BullMQ, recovery), by outcome.",
        unit: "{event}",
      }),
      duration: meter.createHistogram(METRIC.PROCESS_DURATION, {
        description: "Duration of processing a Mappa webhook delivery or stored event.",
        unit: "s",
        advice: { explicitBucketBoundaries: DURATION_BUCKETS },
      }),
      lag: meter.createHistogram(METRIC.LAG, {
        description: "Seconds from the event's occurredAt to its handling.",
        unit: "s",
        advice: { explicitBucketBoundaries: LAG_BUCKETS },
      }),
    };
    return this.instrumentsCache;
  }

  /** Seconds from the event's `occurredAt` to now, `undefined` when it has none. */
  lagSeconds(event: MappaEvent | undefined): number | undefined {
    const at = event?.occurredAt;
    if (at === undefined) return undefined;
    const ms = Date.parse(at);
    if (!Number.isFinite(ms)) return undefined;
    return Math.max(0, (this.now() - ms) / 1000);
  }

  step(parent: Context, kind: MappaDeliveryStep, name: string | undefined): MappaStepScope {
    const attributes: Attributes = {};
    if (name !== undefined) attributes[ATTR.EVENT_TYPE] = name;
    const span = this.tracer.startSpan(
      STEP_NAMES[kind],
      { kind: SpanKind.INTERNAL, attributes },
      parent,
    );
    return new StepSpan(span, trace.setSpan(parent, span), kind === "handler");
  }

  observeBacklog(source: MappaBacklogSource): () => void {
    const { meter, live } = this.instruments();
    this.backlogSources.add(source);
    if (this.gauges === undefined && live) {
      const pending = meter.createObservableGauge(METRIC.BACKLOG_PENDING, {
        description: "Stored Mappa events waiting for a worker.",
        unit: "{event}",
      });
      const failed = meter.createObservableGauge(METRIC.BACKLOG_FAILED, {
        description: "Stored Mappa events parked as failed after their last attempt.",
        unit: "{event}",
      });
      const oldest = meter.createObservableGauge(METRIC.BACKLOG_OLDEST_AGE, {
        description: "Age of the oldest pending Mappa event.",
        unit: "s",
      });
      this.gauges = [pending, failed, oldest];
      meter.addBatchObservableCallback(async (result) => {
        const sources = [...this.backlogSources];
        const read = await Promise.all(
          sources.map(async (s): Promise<MappaBacklog | undefined> => {
            try {
              return await s.read();
            } catch {
              return undefined; // a backlog that cannot be read now reports nothing this time
            }
          }),
        );
        read.forEach((backlog, i) => {
          if (backlog === undefined) return;
          const attributes = { [ATTR.HANDOFF]: (sources[i] as MappaBacklogSource).handoff };
          result.observe(pending, backlog.pending, attributes);
          result.observe(failed, backlog.failed, attributes);
          result.observe(oldest, backlog.oldestPendingAgeSec, attributes);
        });
      }, this.gauges);
    }
    return () => {
      this.backlogSources.delete(source);
    };
  }
}

class StepSpan implements MappaStepScope {
  constructor(
    private readonly span: Span,
    private readonly ctx: Context,
    private readonly recordsException: boolean,
  ) {}
  run<T>(fn: () => T): T {
    return contextApi.with(this.ctx, fn);
  }
  end(error?: unknown): void {
    if (error !== undefined) {
      const type = errorType(error);
      this.span.setAttribute(ATTR.ERROR_TYPE, type);
      // A handler's own error is the user's to see; the receiver's errors say only their code.
      if (this.recordsException && error instanceof Error) this.span.recordException(error);
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: type });
    }
    this.span.end();
  }
}

function endWithOutcome(
  span: Span,
  outcome: string,
  error: unknown,
  extra: (span: Span) => void,
): void {
  span.setAttribute(ATTR.OUTCOME, outcome);
  extra(span);
  if (error !== undefined && (outcome === "rejected" || outcome === "failed")) {
    const type = errorType(error);
    span.setAttribute(ATTR.ERROR_TYPE, type);
    span.setStatus({ code: SpanStatusCode.ERROR, message: type });
  } else if (error !== undefined) {
    // in_flight: not a failure of this receiver, but worth seeing.
    span.setAttribute(ATTR.ERROR_TYPE, errorType(error));
  }
  span.end();
}

class DeliverySpan implements MappaDeliveryScope {
  private readonly ctx: Context;
  private readonly recording: boolean;
  private event: MappaEvent | undefined;

  constructor(
    private readonly telemetry: Telemetry,
    private readonly span: Span,
    parent: Context,
  ) {
    this.ctx = trace.setSpan(parent, span);
    this.recording = span.isRecording();
  }

  verified(event: MappaEvent): void {
    this.event = event;
    if (!this.recording) return;
    this.span.updateName(`process ${event.type}`);
    eventAttributes(this.span, event);
  }

  step(kind: MappaDeliveryStep, name?: string): MappaStepScope {
    if (!this.recording) return NOOP_STEP;
    return this.telemetry.step(this.ctx, kind, name);
  }

  carrier(): MappaTraceCarrier | undefined {
    return carrierOf(this.ctx, this.span.spanContext());
  }

  end(result: MappaDeliveryEnd): void {
    const { telemetry } = this;
    const event = result.event ?? this.event;
    if (this.recording) {
      endWithOutcome(this.span, result.outcome, result.error, (span) => {
        span.setAttribute(ATTR.STATUS_CODE, result.status);
      });
    } else {
      this.span.end();
    }
    const instruments = telemetry.instruments();
    if (!instruments.live) return;
    const attributes: Attributes = {
      [ATTR.MESSAGING_SYSTEM]: "mappa",
      [ATTR.MESSAGING_OPERATION_NAME]: "process",
      [ATTR.OUTCOME]: result.outcome,
    };
    if (event !== undefined) attributes[ATTR.EVENT_TYPE] = event.type;
    if (result.error !== undefined && result.outcome !== "in_flight") {
      attributes[ATTR.ERROR_TYPE] = errorType(result.error);
    }
    instruments.deliveries.add(1, attributes);
    instruments.duration.record(result.durationMs / 1000, attributes);
    if (result.outcome === "handled" || result.outcome === "stored") {
      const lag = telemetry.lagSeconds(event);
      if (lag !== undefined) {
        instruments.lag.record(lag, {
          [ATTR.MESSAGING_SYSTEM]: "mappa",
          [ATTR.EVENT_TYPE]: (event as MappaEvent).type,
        });
      }
    }
  }
}

class ProcessSpan implements MappaProcessScope {
  private readonly ctx: Context;
  private readonly recording: boolean;

  constructor(
    private readonly telemetry: Telemetry,
    private readonly span: Span,
    parent: Context,
    private readonly start: MappaProcessStart,
  ) {
    this.ctx = trace.setSpan(parent, span);
    this.recording = span.isRecording();
  }

  step(kind: MappaDeliveryStep, name?: string): MappaStepScope {
    if (!this.recording) return NOOP_STEP;
    return this.telemetry.step(this.ctx, kind, name);
  }

  run<T>(fn: () => T): T {
    return contextApi.with(this.ctx, fn);
  }

  end(result: MappaProcessEnd): void {
    const { telemetry, start } = this;
    if (this.recording) {
      endWithOutcome(this.span, result.outcome, result.error, (span) => {
        if (result.willRetry !== undefined) span.setAttribute(ATTR.WILL_RETRY, result.willRetry);
      });
    } else {
      this.span.end();
    }
    const instruments = telemetry.instruments();
    if (!instruments.live) return;
    const attributes: Attributes = {
      [ATTR.MESSAGING_SYSTEM]: "mappa",
      [ATTR.MESSAGING_OPERATION_NAME]: "process",
      [ATTR.HANDOFF]: start.handoff,
      [ATTR.OUTCOME]: result.outcome,
    };
    if (start.event !== undefined) attributes[ATTR.EVENT_TYPE] = start.event.type;
    if (result.error !== undefined) attributes[ATTR.ERROR_TYPE] = errorType(result.error);
    instruments.processed.add(1, attributes);
    instruments.duration.record(result.durationMs / 1000, attributes);
    if (result.outcome === "handled") {
      const lag = telemetry.lagSeconds(start.event);
      if (lag !== undefined) {
        instruments.lag.record(lag, {
          [ATTR.MESSAGING_SYSTEM]: "mappa",
          [ATTR.HANDOFF]: start.handoff,
          [ATTR.EVENT_TYPE]: (start.event as MappaEvent).type,
        });
      }
    }
  }
}

/**
 * OpenTelemetry traces and metrics for Mappa webhooks: pass the result as `instrumentation`
 * to any receiver (every adapter takes the core's options), and to workers and recovery.
 *
 * - One span per delivery, kind CONSUMER, named `process <event type>` (messaging semantic
 *   conventions), a child of the active span (the framework's HTTP server span when HTTP is
 *   instrumented), with `messaging.system` "mappa", `messaging.operation.type` "process",
 *   `messaging.message.id`, `mappa.event.type`, `mappa.job.id`, `mappa.webhook.outcome` and,
 *   for `rejected` and `failed`, `error.type` (the error code) with the status ERROR. Child
 *   spans for verification, the idempotency claim and each handler (the active span while the
 *   handler runs, so its own spans nest).
 * - Metrics: `mappa.webhook.deliveries` (counter by outcome and event type),
 *   `messaging.process.duration` (histogram, s), `mappa.webhook.lag` (histogram, s from the
 *   event's `occurredAt` to handling), and for durable hand-offs `mappa.webhook.processed` and
 *   the backlog gauges.
 *
 * Uses the global tracer and meter providers unless given others. Without an SDK every call
 * is a no-op and nothing is built per delivery beyond a non-recording span.
 *
 * @example
 * ```ts
 * import { createMappaWebhooks } from "@mappa-webhooks/core";
 * import { openTelemetry } from "@mappa-webhooks/opentelemetry";
 *
 * const webhooks = createMappaWebhooks({
 *   secret: process.env.MAPPA_WEBHOOK_SECRET ?? "",
 *   instrumentation: openTelemetry(),
 *   on: { "report.completed": (event) => console.log("report ready", event.data.reportId) },
 * });
 * ```
 */
export function openTelemetry(options: OpenTelemetryOptions = {}): MappaInstrumentation {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      "@mappa-webhooks/opentelemetry: openTelemetry() takes an options object (or nothing), e.g. `openTelemetry({ tracerProvider })`.",
    );
  }
  for (const name of ["tracerProvider", "meterProvider"] as const) {
    const provider = options[name] as Record<string, unknown> | undefined;
    const method = name === "tracerProvider" ? "getTracer" : "getMeter";
    if (provider !== undefined && typeof provider?.[method] !== "function") {
      throw new TypeError(
        `@mappa-webhooks/opentelemetry: \`${name}\` must have a \`${method}\` method (an SDK's provider); leave it out to use the global one.`,
      );
    }
  }
  const telemetry = new Telemetry(options);
  // Built once: the SDK copies a span's attributes, so every delivery can pass the same object.
  const base: Attributes = Object.freeze({
    ...telemetry.spanAttributes,
    [ATTR.MESSAGING_SYSTEM]: "mappa",
    [ATTR.MESSAGING_OPERATION_TYPE]: "process",
    [ATTR.MESSAGING_OPERATION_NAME]: "process",
    [ATTR.MESSAGING_DESTINATION_NAME]: DESTINATION,
  });
  const deliveryOptions = { kind: SpanKind.CONSUMER, attributes: base };

  return {
    startDelivery(_start: MappaDeliveryStart): MappaDeliveryScope | undefined {
      const parent = contextApi.active();
      const span = telemetry.tracer.startSpan(`process ${DESTINATION}`, deliveryOptions, parent);
      // Nothing records (no SDK): decline the delivery, so the receiver runs it untraced.
      if (
        !span.isRecording() &&
        !isSpanContextValid(span.spanContext()) &&
        !telemetry.instruments().live
      ) {
        return undefined;
      }
      return new DeliverySpan(telemetry, span, parent);
    },

    startProcess(start: MappaProcessStart): MappaProcessScope {
      const parent = contextApi.active();
      const links: Link[] = [];
      const stored = spanContextFromCarrier(start.carrier);
      if (stored !== undefined) links.push({ context: stored });
      const attributes: Attributes = { ...base };
      attributes[ATTR.HANDOFF] = start.handoff;
      if (start.attempt !== undefined) attributes[ATTR.ATTEMPT] = start.attempt;
      if (start.recovered !== undefined) attributes[ATTR.RECOVERED] = start.recovered;
      const span = telemetry.tracer.startSpan(
        `process ${start.event?.type ?? DESTINATION}`,
        { kind: SpanKind.CONSUMER, attributes, links },
        parent,
      );
      if (start.event !== undefined && span.isRecording()) eventAttributes(span, start.event);
      return new ProcessSpan(telemetry, span, parent, start);
    },

    inject(): MappaTraceCarrier | undefined {
      const active = contextApi.active();
      const span = trace.getSpan(active);
      return span === undefined ? undefined : carrierOf(active, span.spanContext());
    },

    observeBacklog: (source) => telemetry.observeBacklog(source),
  };
}
