import { tracingChannel } from "./diagnostics/channel.js";
import type { MappaWebhookError } from "./errors.js";
import type { MappaEvent } from "./events.js";

/**
 * How a delivery ended: `handled` (handlers ran and succeeded), `duplicate` (already handled,
 * answered 200 without running handlers), `stored` (a durable inbox stored it for workers),
 * `rejected` (a 4xx: a bad signature, a bad body, a wrong method, a client gone), `failed`
 * (a handler or the store failed: 5xx, or a background handler after `ack: "first"`) and
 * `in_flight` (409: the same event is being handled by another delivery right now).
 *
 * @example
 * ```ts
 * const alerting: MappaDeliveryOutcome[] = ["failed"];
 * ```
 */
export type MappaDeliveryOutcome =
  | "handled"
  | "duplicate"
  | "stored"
  | "rejected"
  | "failed"
  | "in_flight";

/** A step of a delivery or of a worker's processing, each a child span in tracing backends. */
export type MappaDeliveryStep = "verify" | "claim" | "handler";

/**
 * A W3C trace context (`traceparent`, `tracestate`, ...) as a plain string map, to store with an
 * event on a durable hand-off (an inbox row, a BullMQ job) so the worker's span links to the
 * delivery that stored it.
 *
 * @example
 * ```ts
 * const carrier: MappaTraceCarrier = { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" };
 * ```
 */
export type MappaTraceCarrier = Record<string, string>;

/** What {@link MappaInstrumentation.startDelivery} is told. */
export interface MappaDeliveryStart {
  /** The request's HTTP method. */
  method: string;
  /** When the receiver got the request, `Date.now()` milliseconds. */
  startedAt: number;
}

/** How a delivery ended, for {@link MappaDeliveryScope.end}. */
export interface MappaDeliveryEnd {
  outcome: MappaDeliveryOutcome;
  /** The status the receiver answered with. */
  status: number;
  /** The verified event, when the request got that far. */
  event?: MappaEvent;
  /** The failure, when the outcome is `rejected`, `failed` or `in_flight`. */
  error?: MappaWebhookError;
  /** From the request to the end of the delivery's work, in milliseconds. */
  durationMs: number;
}

/** One step of a delivery or of a worker's processing (a child span). */
export interface MappaStepScope {
  /** Runs `fn` with this step as the active context, so what `fn` traces nests under it. */
  run<T>(fn: () => T): T;
  /** Ends the step; `error` when it failed. */
  end(error?: unknown): void;
}

/** One delivery, from the request to its outcome (a span, a metric point, ...). */
export interface MappaDeliveryScope {
  /** The signature checked out and the body parsed into this event. */
  verified(event: MappaEvent): void;
  /** Starts a step (`name` tells which handler, e.g. the event type). */
  step(step: MappaDeliveryStep, name?: string): MappaStepScope;
  /**
   * The delivery's trace context as a plain map, to store with the event (an inbox row, a
   * BullMQ job) so a worker can link its span to this delivery; `undefined` when not traced.
   */
  carrier(): MappaTraceCarrier | undefined;
  /** The delivery is over. Called once. */
  end(result: MappaDeliveryEnd): void;
}

/** What {@link MappaInstrumentation.startProcess} is told: a worker picked up a stored event. */
export interface MappaProcessStart {
  /** What hands the event over: `"postgres-inbox"`, `"bullmq"`, `"recovery"`, ... */
  handoff: string;
  /** The event, when it could be parsed. */
  event?: MappaEvent;
  /** The trace context stored with the event by the delivery that stored it. */
  carrier?: MappaTraceCarrier;
  /** This attempt's number, from 1. */
  attempt?: number;
  /** True when the event was found by recovery rather than delivered by Mappa. */
  recovered?: boolean;
  /** When the processing started, `Date.now()` milliseconds. */
  startedAt: number;
}

/** How a worker's processing of one event ended, for {@link MappaProcessScope.end}. */
export interface MappaProcessEnd {
  /** `handled` or `failed`. */
  outcome: "handled" | "failed";
  /** The failure, when `failed`. */
  error?: MappaWebhookError | Error;
  /** True when the event will be tried again after a `failed` attempt. */
  willRetry?: boolean;
  /** From the start of processing to its end, in milliseconds. */
  durationMs: number;
}

/** A worker's processing of one stored event (a span, a metric point, ...). */
export interface MappaProcessScope {
  /** Starts a step (a handler, in the worker). */
  step(step: MappaDeliveryStep, name?: string): MappaStepScope;
  /** Runs `fn` with the processing as the active context. */
  run<T>(fn: () => T): T;
  /** The processing is over. Called once. */
  end(result: MappaProcessEnd): void;
}

/** What a durable hand-off reports for its backlog gauges. */
export interface MappaBacklog {
  /** Events waiting to be handled. */
  pending: number;
  /** Events parked as failed. */
  failed: number;
  /** Age of the oldest pending event in seconds, `0` when none is pending. */
  oldestPendingAgeSec: number;
}

/** A durable hand-off whose backlog is observed by {@link MappaInstrumentation.observeBacklog}. */
export interface MappaBacklogSource {
  /** `"postgres-inbox"`, `"bullmq"`, ... */
  handoff: string;
  /** Reads the backlog; called whenever the metrics are collected. */
  read(): MappaBacklog | Promise<MappaBacklog>;
}

/**
 * Where a receiver (and workers, and recovery) report what they do: pass one as the option
 * `instrumentation`. `@mappa-webhooks/opentelemetry`'s `openTelemetry()` is one; anything with
 * these methods fits. A throwing instrumentation never changes an answer.
 *
 * @example
 * ```ts
 * import { openTelemetry } from "@mappa-webhooks/opentelemetry";
 * createMappaWebhooks({ secret, instrumentation: openTelemetry() });
 * ```
 */
export interface MappaInstrumentation {
  /** A delivery reached the receiver; returns its scope, or `undefined` to ignore it. */
  startDelivery(start: MappaDeliveryStart): MappaDeliveryScope | undefined;
  /**
   * A worker picked up a stored event; its span links to the delivery in `carrier`. For the
   * workers of durable hand-offs (the Postgres inbox, BullMQ) and recovery.
   */
  startProcess?(start: MappaProcessStart): MappaProcessScope | undefined;
  /** The active trace context as a plain map (inside a handler: the handler's), to store with an event. */
  inject?(): MappaTraceCarrier | undefined;
  /** Registers backlog gauges of a durable hand-off; returns the function that removes them. */
  observeBacklog?(source: MappaBacklogSource): () => void;
}

/**
 * What subscribers of the `mappa-webhooks:delivery` TracingChannel receive (start, end,
 * asyncStart, asyncEnd, and error for `rejected`, `failed` and `in_flight`). Fields after the
 * method are filled in as the delivery goes; all are set by `asyncEnd`.
 *
 * @example
 * ```ts
 * import diagnostics from "node:diagnostics_channel";
 * diagnostics.tracingChannel(MAPPA_DELIVERY_CHANNEL).subscribe({
 *   asyncEnd: (message: MappaDeliveryMessage) => console.log(message.outcome, message.timings),
 * } as never);
 * ```
 */
export interface MappaDeliveryMessage {
  /** The request's HTTP method. */
  method: string;
  /** When the delivery started, `Date.now()` milliseconds. */
  startedAt: number;
  /** The verified event, once the request got that far. */
  event?: MappaEvent;
  outcome?: MappaDeliveryOutcome;
  /** The status answered. */
  status?: number;
  /** The failure, for `rejected`, `failed` and `in_flight`. */
  error?: MappaWebhookError;
  /** Milliseconds spent in each step, and in all. */
  timings: { verifyMs?: number; claimMs?: number; handlersMs?: number; durationMs?: number };
}

/** The TracingChannel every receiver publishes its deliveries to (`tracing:mappa-webhooks:delivery:*`). */
export const MAPPA_DELIVERY_CHANNEL = "mappa-webhooks:delivery";

let deliveryChannel: ReturnType<typeof tracingChannel<MappaDeliveryMessage>> | null | undefined =
  null;

/** The delivery channel, made on first use; `undefined` where the runtime has none. */
export function getDeliveryChannel() {
  if (deliveryChannel === null) {
    try {
      deliveryChannel = tracingChannel<MappaDeliveryMessage>(MAPPA_DELIVERY_CHANNEL);
    } catch {
      deliveryChannel = undefined;
    }
  }
  return deliveryChannel;
}

/** True when anyone listens on the delivery channel: the only per-delivery cost when nobody does. */
export function deliveryChannelActive(): boolean {
  const channel = deliveryChannel === null ? getDeliveryChannel() : deliveryChannel;
  return (
    channel !== undefined &&
    (channel.start.hasSubscribers ||
      channel.end.hasSubscribers ||
      channel.asyncStart.hasSubscribers ||
      channel.asyncEnd.hasSubscribers ||
      channel.error.hasSubscribers)
  );
}

const now: () => number =
  typeof globalThis.performance?.now === "function"
    ? () => globalThis.performance.now()
    : () => Date.now();

const NO_STEP: MappaStepScope = { run: (fn) => fn(), end: () => {} };

/** Calls `fn`; an instrumentation that throws never changes an answer. */
function guarded<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

/** Runs `fn` inside `scope`; a scope whose `run` throws before calling `fn` loses no work. */
function runIn<T>(scope: MappaStepScope, fn: () => T): T {
  let called = false;
  try {
    return scope.run(() => {
      called = true;
      return fn();
    });
  } catch (error) {
    if (called) throw error;
    return fn();
  }
}

/**
 * One attempt of a durable hand-off's worker (the Postgres inbox, BullMQ) as its
 * instrumentation sees it: handler steps, then one end. Never throws.
 */
export class ProcessTrace {
  private readonly started = now();
  private ended = false;
  constructor(private readonly scope: MappaProcessScope) {}

  /** The handler's step. */
  step(name: string): MappaStepScope {
    const inner = guarded(() => this.scope.step("handler", name)) ?? NO_STEP;
    return {
      run: (fn) => runIn(inner, fn),
      end: (error) => {
        guarded(() => inner.end(error));
      },
    };
  }

  /** Ends the attempt once; later calls do nothing. */
  end(outcome: "handled" | "failed", error?: Error, willRetry?: boolean): void {
    if (this.ended) return;
    this.ended = true;
    const durationMs = now() - this.started;
    guarded(() =>
      this.scope.end({
        outcome,
        durationMs,
        ...(error === undefined ? {} : { error }),
        ...(willRetry === undefined ? {} : { willRetry }),
      }),
    );
  }
}

/**
 * Starts a worker attempt's trace, or `undefined` when the instrumentation has no
 * `startProcess` (or declines, or throws). A `carrier` that is not an object is left out.
 *
 * @example
 * ```ts
 * const trace = startProcessTrace(instrumentation, { handoff: "bullmq", attempt: 1, startedAt: Date.now(), carrier });
 * const step = trace?.step("report.completed");
 * ```
 */
export function startProcessTrace(
  instrumentation: MappaInstrumentation | undefined,
  start: MappaProcessStart,
): ProcessTrace | undefined {
  if (instrumentation?.startProcess === undefined) return undefined;
  const { carrier, ...rest } = start;
  const clean: MappaProcessStart =
    carrier !== null && carrier !== undefined && typeof carrier === "object"
      ? { ...rest, carrier }
      : rest;
  const scope = guarded(() => instrumentation.startProcess?.(clean));
  return scope === undefined ? undefined : new ProcessTrace(scope);
}

/** A step as the pipeline sees it: the instrumentation's scope and the step's start. */
export class TracedStep {
  private readonly started = now();
  constructor(
    private readonly trace: DeliveryTrace,
    private readonly kind: MappaDeliveryStep,
    private readonly scope: MappaStepScope,
  ) {}
  run<T>(fn: () => T): T {
    if (this.scope === NO_STEP) return fn();
    return runIn(this.scope, fn);
  }
  end(error?: unknown): void {
    const ms = now() - this.started;
    const { timings } = this.trace;
    if (this.kind === "verify") timings.verifyMs = ms;
    else if (this.kind === "claim") timings.claimMs = ms;
    guarded(() => this.scope.end(error));
  }
}

/**
 * Everything one traced delivery carries: the instrumentation's scope, the diagnostics
 * message and the timings. Made only when an instrumentation is set or the channel has
 * subscribers, so an untraced delivery pays nothing for it.
 */
export class DeliveryTrace {
  readonly started = now();
  readonly startedAt = Date.now();
  readonly timings: MappaDeliveryMessage["timings"] = {};
  readonly scope: MappaDeliveryScope | undefined;
  message: MappaDeliveryMessage | undefined;
  event: MappaEvent | undefined;
  /** The claim stored the event (a durable inbox): the outcome is `stored`. */
  stored = false;
  /** `ack: "first"`: the background work the delivery ends with. */
  background: Promise<MappaWebhookError | undefined> | undefined;
  private handlersStarted: number | undefined;
  private ended = false;

  constructor(instrumentation: MappaInstrumentation | undefined, method: string) {
    const start = { method, startedAt: this.startedAt };
    this.scope =
      instrumentation === undefined
        ? undefined
        : guarded(() => instrumentation.startDelivery(start));
  }

  verified(event: MappaEvent): void {
    this.event = event;
    if (this.message !== undefined) this.message.event = event;
    const { scope } = this;
    if (scope !== undefined) guarded(() => scope.verified(event));
  }

  step(kind: MappaDeliveryStep, name?: string): TracedStep {
    if (kind === "handler" && this.handlersStarted === undefined) this.handlersStarted = now();
    const { scope } = this;
    const inner =
      scope === undefined ? NO_STEP : (guarded(() => scope.step(kind, name)) ?? NO_STEP);
    return new TracedStep(this, kind, inner);
  }

  carrier(): MappaTraceCarrier | undefined {
    const { scope } = this;
    return scope === undefined ? undefined : guarded(() => scope.carrier());
  }

  /** Fills in the outcome (and the message's), ends the scope; once. */
  end(outcome: MappaDeliveryOutcome, status: number, error: MappaWebhookError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    const end = now();
    if (this.handlersStarted !== undefined) this.timings.handlersMs = end - this.handlersStarted;
    const durationMs = end - this.started;
    this.timings.durationMs = durationMs;
    const message = this.message;
    if (message !== undefined) {
      message.outcome = outcome;
      message.status = status;
      if (error !== undefined) message.error = error;
    }
    const { scope } = this;
    if (scope === undefined) return;
    const result: MappaDeliveryEnd = { outcome, status, durationMs };
    if (this.event !== undefined) result.event = this.event;
    if (error !== undefined) result.error = error;
    guarded(() => scope.end(result));
  }
}

/** The outcome of an answer: what the receiver did with the delivery. */
export function outcomeOf(
  status: number,
  error: MappaWebhookError | undefined,
  duplicate: boolean,
  stored: boolean,
): MappaDeliveryOutcome {
  if (error === undefined) {
    if (duplicate) return "duplicate";
    return stored ? "stored" : "handled";
  }
  if (error.code === "event_in_flight") return "in_flight";
  return status >= 500 ? "failed" : "rejected";
}
