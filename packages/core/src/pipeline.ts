import {
  DEFAULT_BODY_TIMEOUT_MS,
  DEFAULT_MAX_BODY_BYTES,
  payloadTooLarge,
  readBodyWithLimit,
} from "./body.js";
import { isMappaWebhookError, MappaWebhookError, statusForCode } from "./errors.js";
import {
  type MappaEvent,
  type MappaEventType,
  type MappaKnownEvent,
  type MappaUnknownEvent,
  parseEvent,
} from "./events.js";
import type { HeadersInput } from "./headers.js";
import type { RawBody } from "./hmac/types.js";
import {
  type ClaimOptions,
  type ClaimResult,
  createMemoryIdempotencyStore,
  DEFAULT_COMPLETED_TTL_MS,
  DEFAULT_LEASE_MS,
  type IdempotencyStore,
} from "./idempotency.js";
import {
  DeliveryTrace,
  deliveryChannelActive,
  getDeliveryChannel,
  type MappaDeliveryMessage,
  type MappaInstrumentation,
  outcomeOf,
} from "./instrumentation.js";
import {
  failureLine,
  logs,
  type MappaLogger,
  type MappaLogLevel,
  type ResolvedLogger,
  resolveLogger,
  successLine,
  writeLog,
} from "./log.js";
import { untrackHandled } from "./recovery-store.js";
import {
  type ClockInput,
  normalizeSecrets,
  type SecretInput,
  type VerifySignatureParams,
  type VerifySignatureResult,
  verifyNow,
} from "./verify.js";

/** A handler for one event type; its `event.data` is typed for that type. */
export type MappaEventHandler<K extends MappaEventType, TContext = unknown> = (
  event: MappaKnownEvent<K>,
  context: TContext,
) => unknown;

/** Handlers by event type. Each handler's event is narrowed to its type. */
export type MappaHandlerMap<TContext = unknown> = {
  [K in MappaEventType]?: MappaEventHandler<K, TContext>;
};

/** A handler for every event, known or not. */
export type MappaAnyHandler<TContext = unknown> = (event: MappaEvent, context: TContext) => unknown;

/** Where an error reported to `onError` happened. */
export type MappaErrorPhase = "request" | "handler" | "idempotency" | "background" | "recovery";

/** What `onError` receives besides the error. */
export interface MappaErrorInfo {
  phase: MappaErrorPhase;
  /** The event, once it was verified and parsed. */
  event?: MappaEvent;
  /** The status the receiver answered with (or will answer with). */
  status: number;
}

/** Options of {@link createMappaWebhooks}. */
export interface MappaWebhooksOptions<TContext = unknown> {
  /** The endpoint's signing secret, or a list while rotating (any may match). */
  secret: SecretInput;
  /** Allowed clock difference in seconds, both directions. Default 300. */
  toleranceSec?: number;
  /** The clock in unix seconds, for tests. */
  now?: ClockInput;
  /** Signature header name(s). Default `mappa-signature`, then `conduit-signature`. */
  headerName?: string | readonly string[];
  /** Handlers by event type. A handler that throws makes the answer 500, so Mappa retries. */
  on?: MappaHandlerMap<TContext>;
  /**
   * Called for event types this package does not know. Without it such events are answered
   * 200 and ignored; if it throws, the answer is 500 and Mappa retries.
   */
  onUnknown?: (event: MappaUnknownEvent, context: TContext) => unknown;
  /** Called for every failure, with the error and where it happened. Never throws back. */
  onError?: (error: MappaWebhookError, info: MappaErrorInfo) => void;
  /**
   * Deduplication by event id. Default: an in-memory store (one instance). Pass a shared store
   * when running several instances, or `false` to run handlers for every delivery.
   */
  idempotency?: IdempotencyStore | false;
  /** How long a claim protects an event being handled. Default 60 s. */
  leaseMs?: number;
  /** How long a handled event is remembered. Default 1 h (Mappa retries for ~36 min). */
  completedTtlMs?: number;
  /**
   * `"after-handlers"` (default): answer once handlers finished, 500 if one threw, so nothing
   * is lost. `"first"`: answer 200 right after verification and run handlers in the background
   * (through the adapter's `waitUntil`); a failure then goes to `onError` and is NOT retried by
   * Mappa. Use it only when handlers are slow and you accept that trade-off, or hand events to
   * a durable queue.
   */
  ack?: "after-handlers" | "first";
  /** Largest accepted body; larger ones get 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /**
   * Longest time reading the body may take, in milliseconds; a stalled or slow-drip sender
   * gets 408 `body_timeout` after it. Default 10 s (Mappa sends small bodies at once).
   */
  bodyTimeoutMs?: number;
  /**
   * Where failures are logged: one line per rejected (warn) or failed (error) delivery, naming
   * the code and the fix, never the body or a secret. Anything with `debug`, `info`, `warn` and
   * `error` fits (console, pino, winston). Default `console`; `false` logs nothing.
   */
  logger?: MappaLogger | false;
  /**
   * The lowest level logged. Default `"warn"`: rejected and failed deliveries only. `"info"`
   * also logs one line per handled, stored or duplicate delivery, and 409 `event_in_flight`.
   */
  logLevel?: MappaLogLevel;
  /**
   * Traces and metrics of every delivery: a span with child spans for verification, the
   * idempotency claim and each handler, and the outcome. E.g. `openTelemetry()` from
   * `@mappa-webhooks/opentelemetry`. Deliveries are also published on the
   * `mappa-webhooks:delivery` diagnostics_channel, with or without this option.
   */
  instrumentation?: MappaInstrumentation;
}

/** A framework-neutral request, as adapters hand it over. */
export interface WebhookRequestInput<TContext = unknown> {
  method: string;
  headers: HeadersInput;
  /** The raw body bytes exactly as received. */
  rawBody: RawBody;
  /** Passed to handlers as their second argument (e.g. the framework's request). */
  context?: TContext;
  /** Keeps background work alive after the response (edge runtimes); used by ack-first. */
  waitUntil?: (promise: Promise<unknown>) => void;
  /**
   * Called with the verified event before deduplication and handlers, e.g. to expose it on
   * the framework's request (`req.mappaEvent`) for handlers and later middleware.
   */
  onVerified?: (event: MappaEvent) => void;
}

/** A framework-neutral response for the adapter to write. */
export interface WebhookResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The verified event, when the request got that far. */
  event?: MappaEvent;
  /** The failure, for non-2xx answers. */
  error?: MappaWebhookError;
  /** The signature check's result, when it passed. */
  verification?: VerifySignatureResult;
  /** True when the event was already handled, so handlers did not run. */
  duplicate?: boolean;
}

/** The receiver {@link createMappaWebhooks} returns. */
export interface MappaWebhooks<TContext = unknown> {
  /** Turns a request into a response: verification, parsing, idempotency and handlers. */
  handle(input: WebhookRequestInput<TContext>): Promise<WebhookResponse>;
  /** The same for a Fetch `Request`, reading its body within `maxBodyBytes`. */
  handleRequest(
    request: Request,
    options?: { context?: TContext; waitUntil?: (promise: Promise<unknown>) => void },
  ): Promise<Response>;
  /** Verifies and parses only, without idempotency or handlers; rejects with the error. */
  verifyAndParse(input: { headers: HeadersInput; rawBody: RawBody }): Promise<MappaEvent>;
  /** The response for an error an adapter detected itself (e.g. `body_already_parsed`); calls `onError`. */
  errorResponse(error: unknown): WebhookResponse;
  /** Adds a handler for one type; returns a function that removes it. */
  on<K extends MappaEventType>(type: K, handler: MappaEventHandler<K, TContext>): () => void;
  /** Adds a handler for every event, known or unknown; returns a function that removes it. */
  onAny(handler: MappaAnyHandler<TContext>): () => void;
  /** The body limit in bytes, for adapters that read the body themselves. */
  readonly maxBodyBytes: number;
  /** The body deadline in milliseconds, for adapters that read the body themselves. */
  readonly bodyTimeoutMs: number;
}

// ---------------------------------------------------------------------------------------------
// How a delivery flows through the receiver, one named step each (see `handle` below):
//
//   1. checkRequest     POST only, body within maxBodyBytes          405 / 413
//   2. verifyAndParse   signature, then the body into a typed event   401 / 400
//   3. claimEvent       the idempotency store's lease on the event    200 duplicate / 409 / 503
//   4. runHandlers      the typed handler (or onUnknown), then listeners, lease renewed meanwhile
//   5. settle           complete or release the claim; the answer     200 / 500
//
// Every step answers through `answerError`, the one place a failure becomes a response and is
// reported to `onError`. The request path avoids spreads, closures per delivery and promises
// for synchronous work: each measurably costs throughput (see BENCHMARKS.md).
// ---------------------------------------------------------------------------------------------

type Handler<TContext> = (event: MappaEvent, context: TContext) => unknown;
type Verified = { verification: VerifySignatureResult; event: MappaEvent };

/** Everything fixed when the receiver is created; each step reads what it needs from here. */
interface Receiver<TContext> {
  options: MappaWebhooksOptions<TContext>;
  secrets: ReturnType<typeof normalizeSecrets>;
  handlerMap: MappaHandlerMap<TContext>;
  listeners: Map<string, Set<Handler<TContext>>>;
  anyListeners: Set<MappaAnyHandler<TContext>>;
  store: IdempotencyStore | undefined;
  leaseMs: number;
  ttlMs: number;
  maxBodyBytes: number;
  bodyTimeoutMs: number;
  ackFirst: boolean;
  log: ResolvedLogger | undefined;
  /** `logLevel` takes `"info"`: every delivery gets a line. */
  logSuccess: boolean;
  instrumentation: MappaInstrumentation | undefined;
}

const RECEIVED = JSON.stringify({ received: true });
const DUPLICATE = JSON.stringify({ received: true, duplicate: true });

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

/**
 * The longest delay `setTimeout` and `setInterval` honour (2^31−1 ms, about 24.8 days): a longer
 * one fires after 1 ms instead, so a time option above it would fail every delivery at run time.
 */
const MAX_TIMER_MS = 2 ** 31 - 1;

function checkNumber(name: string, value: number | undefined, min: number, max?: number): void {
  if (value === undefined) return;
  if (typeof value === "number" && Number.isFinite(value) && value >= min) {
    if (max === undefined || value <= max) return;
  }
  const shown = typeof value === "string" ? JSON.stringify(value) : String(value);
  const range =
    max === undefined
      ? `a number >= ${min}`
      : `a number of milliseconds from ${min} to ${max} (2^31−1, the longest timer JavaScript runs)`;
  throw new MappaWebhookError("invalid_options", `\`${name}\` must be ${range}, got ${shown}.`);
}

/**
 * Whatever a handler throws, the answer is 500 `handler_failed` so Mappa retries; the thrown
 * value is kept as `cause` and its message never reaches the client. Even a
 * MappaWebhookError from a nested `constructEvent` must not turn into a 401 or 413.
 */
function handlerFailed(error: unknown): MappaWebhookError {
  return new MappaWebhookError(
    "handler_failed",
    "A webhook handler threw; answered 500 so Mappa retries the delivery. See `cause`.",
    { cause: error },
  );
}

/** Whatever the store throws, the answer is 503 so Mappa retries. */
function storeFailed(error: unknown): MappaWebhookError {
  return new MappaWebhookError(
    "idempotency_store_failed",
    "The idempotency store failed; answered 503 so Mappa retries the delivery. See `cause`.",
    { cause: error },
  );
}

/** An error that is not one of ours, met outside a handler (e.g. a throwing header getter). */
function unexpected(error: unknown): MappaWebhookError {
  if (isMappaWebhookError(error)) return error;
  return new MappaWebhookError(
    "handler_failed",
    "The receiver failed unexpectedly; answered 500 so Mappa retries the delivery. See `cause`.",
    { cause: error },
  );
}

function report<TContext>(
  receiver: Receiver<TContext>,
  error: MappaWebhookError,
  info: MappaErrorInfo,
): void {
  if (receiver.log !== undefined) logFailure(receiver.log, error, info);
  const onError = receiver.options.onError;
  if (onError === undefined) return;
  try {
    onError(error, info);
  } catch {
    // onError must never turn an answer into a crash.
  }
}

/** One line per failure: warn for a rejected delivery, error for a failed one, info for 409. */
function logFailure(log: ResolvedLogger, error: MappaWebhookError, info: MappaErrorInfo): void {
  const { status } = info;
  const level = status === 409 ? "info" : status >= 400 && status < 500 ? "warn" : "error";
  if (!logs(log, level)) return;
  const what =
    status === 409
      ? "delivery in flight"
      : status >= 500
        ? "delivery failed"
        : status >= 400
          ? "delivery rejected"
          : info.phase === "background"
            ? "handlers failed after the answer"
            : "idempotency store failed after the answer";
  writeLog(log, level, failureLine(what, status, error, info.event));
}

// Responses are built as literals: spreads on this path measurably cost throughput.
function jsonHeaders(): Record<string, string> {
  return { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" };
}

function success(event: MappaEvent, verification: VerifySignatureResult, duplicate: boolean) {
  const response: WebhookResponse = {
    status: 200,
    headers: jsonHeaders(),
    body: duplicate ? DUPLICATE : RECEIVED,
    event,
    verification,
  };
  if (duplicate) response.duplicate = true;
  return response;
}

/** The one place a failure becomes an answer: a JSON body, the code's status, `onError` told. */
function answerError<TContext>(
  receiver: Receiver<TContext>,
  raw: unknown,
  phase: MappaErrorPhase = "request",
  event?: MappaEvent,
): WebhookResponse {
  const error = unexpected(raw);
  // From the code, never from the object: an impostor's `status` could be anything.
  const status = statusForCode(error.code);
  // A signature failure tells the sender nothing beyond its code; 4xx body errors say more;
  // a 5xx never shows a message (it may carry a handler's or a store's details).
  const detailed =
    status === 400 || status === 405 || status === 408 || status === 409 || status === 413;
  // The one 5xx that names its fix: the receiver is mounted wrong, and the sender's log (the
  // CLI, a curl) is often where that is first seen. The fix is the adapter's constant text.
  const body = JSON.stringify(
    detailed
      ? { error: error.code, message: error.message }
      : error.code === "body_already_parsed" && error.fix !== undefined
        ? { error: error.code, fix: error.fix }
        : { error: error.code },
  );
  const response: WebhookResponse = { status, headers: jsonHeaders(), body, error };
  if (event !== undefined) response.event = event;
  if (error.code === "method_not_allowed") response.headers.allow = "POST";
  if (error.code === "event_in_flight") response.headers["retry-after"] = "5";
  if (error.code === "payload_too_large" || error.code === "body_timeout") {
    response.headers.connection = "close";
  }
  report(receiver, error, event === undefined ? { phase, status } : { phase, status, event });
  return response;
}

const byteLength = (body: RawBody): number =>
  typeof body === "string" ? body.length : (body as Uint8Array | ArrayBuffer).byteLength;

/** Step 1: only a POST within the size limit goes further. */
function checkRequest<TContext>(
  receiver: Receiver<TContext>,
  input: WebhookRequestInput<TContext>,
): WebhookResponse | undefined {
  if (input.method !== "POST" && input.method.toUpperCase() !== "POST") {
    return answerError(
      receiver,
      new MappaWebhookError(
        "method_not_allowed",
        `Method ${input.method} is not allowed: Mappa delivers webhooks with POST.`,
      ),
    );
  }
  // Strings are counted in UTF-16 units, a lower bound of their byte length; adapters
  // enforce the exact limit while reading.
  if (input.rawBody != null && byteLength(input.rawBody) > receiver.maxBodyBytes) {
    return answerError(receiver, payloadTooLarge(receiver.maxBodyBytes));
  }
  return undefined;
}

/** Step 2: the signature, then the body. Synchronous on node:crypto, a promise on Web Crypto. */
function verifyAndParse<TContext>(
  receiver: Receiver<TContext>,
  input: { headers: HeadersInput; rawBody: RawBody },
): Verified | Promise<Verified> {
  const { options } = receiver;
  const params: VerifySignatureParams = {
    payload: input.rawBody,
    headers: input.headers,
    secret: receiver.secrets,
  };
  if (options.toleranceSec !== undefined) params.toleranceSec = options.toleranceSec;
  if (options.now !== undefined) params.now = options.now;
  if (options.headerName !== undefined) params.headerName = options.headerName;
  const checked = verifyNow(params);
  if (checked instanceof Promise) {
    return checked.then((verification) => ({ verification, event: parseEvent(input.rawBody) }));
  }
  return { verification: checked, event: parseEvent(input.rawBody) };
}

/**
 * Step 3: the store's lease on the event. Resolves the owner token, `undefined` when nothing
 * is deduplicated (no store, or an event without a key), or the answer when this delivery
 * must stop here (a duplicate, in flight elsewhere, or the store failed).
 */
async function claimEvent<TContext>(
  receiver: Receiver<TContext>,
  event: MappaEvent,
  verification: VerifySignatureResult,
  trace: DeliveryTrace | undefined,
): Promise<{ token: string | undefined } | WebhookResponse> {
  const { store } = receiver;
  const key = event.idempotencyKey;
  if (store === undefined || key === undefined) return { token: undefined };
  let claim: ClaimResult;
  const step = trace?.step("claim");
  try {
    if (trace === undefined) {
      claim = await store.claim(key, { leaseMs: receiver.leaseMs, event });
    } else {
      const claimOptions: ClaimOptions = { leaseMs: receiver.leaseMs, event };
      const carrier = trace.carrier();
      if (carrier !== undefined) claimOptions.traceContext = carrier;
      claim = await (step as NonNullable<typeof step>).run(() => store.claim(key, claimOptions));
    }
  } catch (error) {
    step?.end(error);
    return answerError(receiver, storeFailed(error), "idempotency", event);
  }
  step?.end();
  if (claim.status === "claimed") {
    if (trace !== undefined && claim.stored === true) trace.stored = true;
    return { token: claim.token };
  }
  if (claim.status === "completed") {
    await untrackHandled(store, event, (error) =>
      report(receiver, storeFailed(error), { phase: "idempotency", status: 200, event }),
    );
    return success(event, verification, true);
  }
  return answerError(
    receiver,
    new MappaWebhookError(
      "event_in_flight",
      `Event ${key} is being handled by another delivery right now; retry later.`,
    ),
    "idempotency",
    event,
  );
}

/** The handlers an event runs through, in order: its map handler (or onUnknown), then listeners. */
function handlersFor<TContext>(receiver: Receiver<TContext>, event: MappaEvent) {
  const fns: Handler<TContext>[] = [];
  const first = event.known ? receiver.handlerMap[event.type] : receiver.options.onUnknown;
  if (first !== undefined) fns.push(first as Handler<TContext>);
  const typed = receiver.listeners.get(event.type);
  if (typed !== undefined) fns.push(...typed);
  if (receiver.anyListeners.size > 0) fns.push(...receiver.anyListeners);
  return fns;
}

/**
 * Step 4: runs the handlers in order. A synchronous handler costs no tick: only a returned
 * promise is awaited, and `undefined` means everything already finished. Throws what a
 * handler threw.
 */
function runHandlers<TContext>(
  receiver: Receiver<TContext>,
  event: MappaEvent,
  context: TContext,
  trace: DeliveryTrace | undefined,
): Promise<void> | undefined {
  if (trace !== undefined) return runHandlersTraced(receiver, event, context, trace);
  const fns = handlersFor(receiver, event);
  for (let i = 0; i < fns.length; i++) {
    const returned = (fns[i] as Handler<TContext>)(event, context);
    if (isThenable(returned)) return runRemaining(returned, fns, i + 1, event, context);
  }
  return undefined;
}

/** {@link runHandlers} with a step (a child span) per handler, each the active context while it runs. */
async function runHandlersTraced<TContext>(
  receiver: Receiver<TContext>,
  event: MappaEvent,
  context: TContext,
  trace: DeliveryTrace,
): Promise<void> {
  const fns = handlersFor(receiver, event);
  for (const fn of fns) {
    const step = trace.step("handler", event.type);
    try {
      await step.run(() => fn(event, context));
    } catch (error) {
      step.end(error);
      throw error;
    }
    step.end();
  }
}

async function runRemaining<TContext>(
  pending: PromiseLike<unknown>,
  fns: Handler<TContext>[],
  from: number,
  event: MappaEvent,
  context: TContext,
): Promise<void> {
  await pending;
  for (let i = from; i < fns.length; i++) await (fns[i] as Handler<TContext>)(event, context);
}

/**
 * Keeps the claim alive while slow handlers run, so a retry arriving after `leaseMs` gets 409
 * instead of a second, parallel run. Renews every third of the lease; a crashed process stops
 * renewing and its claim expires as before. Returns the function that stops renewing.
 */
function keepClaimAlive<TContext>(
  receiver: Receiver<TContext>,
  event: MappaEvent,
  key: string,
  token: string,
): () => void {
  const { store, leaseMs } = receiver;
  if (store?.renew === undefined) return () => {};
  let lost = false;
  const timer = setInterval(
    () => {
      store.renew?.(key, token, { leaseMs }).then(
        (owned) => {
          if (owned || lost) return;
          lost = true;
          report(
            receiver,
            new MappaWebhookError(
              "idempotency_store_failed",
              `The claim on event ${key} was lost while its handlers ran (the lease of ${leaseMs} ms ran out before a renewal), so another delivery may run them too. Raise \`leaseMs\`.`,
            ),
            { phase: "idempotency", status: 200, event },
          );
        },
        (error: unknown) =>
          report(receiver, storeFailed(error), { phase: "idempotency", status: 200, event }),
      );
    },
    Math.max(1, Math.floor(leaseMs / 3)),
  );
  // Never keep a process alive just to renew (Node); other runtimes have no `unref`.
  (timer as { unref?: () => void }).unref?.();
  return () => clearInterval(timer);
}

/**
 * Steps 4 and 5 with a claim: runs the handlers while renewing the lease, then completes the
 * claim, or releases it after a failure so Mappa's retry runs them again. Resolves the
 * failure, if any.
 */
async function runAndSettle<TContext>(
  receiver: Receiver<TContext>,
  event: MappaEvent,
  context: TContext,
  key: string,
  token: string,
  trace: DeliveryTrace | undefined,
): Promise<MappaWebhookError | undefined> {
  const store = receiver.store as IdempotencyStore;
  let stopRenewing: (() => void) | undefined;
  try {
    const running = runHandlers(receiver, event, context, trace);
    if (running !== undefined) {
      stopRenewing = keepClaimAlive(receiver, event, key, token);
      await running;
    }
  } catch (error) {
    stopRenewing?.();
    await store.release(key, token).catch((releaseError: unknown) => {
      report(receiver, storeFailed(releaseError), { phase: "idempotency", status: 500, event });
    });
    return handlerFailed(error);
  }
  stopRenewing?.();
  const completing = (async () => {
    try {
      await store.complete(key, token, { ttlMs: receiver.ttlMs });
    } catch (error) {
      // The effect happened: answering non-2xx would make Mappa run it again.
      report(receiver, storeFailed(error), { phase: "idempotency", status: 200, event });
    }
  })();
  // The job is untracked at the same time, not after: the handlers ran, so recovery has nothing
  // to ask about whether or not the done mark lands, and a networked store saves a round trip.
  await Promise.all([
    completing,
    untrackHandled(store, event, (error) =>
      report(receiver, storeFailed(error), { phase: "idempotency", status: 200, event }),
    ),
  ]);
  return undefined;
}

/** Steps 4 and 5 without a claim: the handlers, then the answer. */
async function runUnclaimed<TContext>(
  receiver: Receiver<TContext>,
  event: MappaEvent,
  context: TContext,
  trace: DeliveryTrace | undefined,
): Promise<MappaWebhookError | undefined> {
  try {
    const running = runHandlers(receiver, event, context, trace);
    if (running !== undefined) await running;
  } catch (error) {
    return handlerFailed(error);
  }
  return undefined;
}

/** `ack: "first"`: answer now, finish steps 4 and 5 in the background (kept alive by `waitUntil`). */
function acknowledgeFirst<TContext>(
  receiver: Receiver<TContext>,
  input: WebhookRequestInput<TContext>,
  verified: Verified,
  token: string | undefined,
  trace: DeliveryTrace | undefined,
): WebhookResponse {
  const { event } = verified;
  const context = input.context as TContext;
  const key = event.idempotencyKey;
  const work =
    token === undefined || key === undefined
      ? runUnclaimed(receiver, event, context, trace)
      : runAndSettle(receiver, event, context, key, token, trace);
  // The delivery's trace ends with the background work, so a late failure is its outcome.
  if (trace !== undefined) trace.background = work;
  const background = work.then((error) => {
    if (error !== undefined) report(receiver, error, { phase: "background", status: 200, event });
  });
  if (input.waitUntil !== undefined) input.waitUntil(background);
  return success(event, verified.verification, false);
}

/**
 * The whole delivery. Untraced (no instrumentation, no channel subscriber, no success log) it
 * costs one check; traced, the delivery is published on the diagnostics channel and reported
 * to the instrumentation.
 */
function handle<TContext>(
  receiver: Receiver<TContext>,
  input: WebhookRequestInput<TContext>,
): Promise<WebhookResponse> {
  if (receiver.instrumentation === undefined && !receiver.logSuccess && !deliveryChannelActive()) {
    return handleDelivery(receiver, input, undefined);
  }
  return handleTraced(receiver, input);
}

/** The outcome of a traced delivery: ends its trace and logs a success when asked. */
function endTrace<TContext>(
  receiver: Receiver<TContext>,
  trace: DeliveryTrace,
  response: WebhookResponse,
  late: MappaWebhookError | undefined,
): MappaWebhookError | undefined {
  const error = late ?? response.error;
  const outcome =
    late === undefined
      ? outcomeOf(response.status, response.error, response.duplicate === true, trace.stored)
      : "failed";
  trace.end(outcome, response.status, error);
  if (receiver.logSuccess && error === undefined && trace.event !== undefined) {
    writeLog(receiver.log, "info", successLine(outcome, response.status, trace.event));
  }
  return error;
}

/** Ends the trace now, or after the background work of `ack: "first"`. */
function finishTrace<TContext>(
  receiver: Receiver<TContext>,
  trace: DeliveryTrace,
  response: WebhookResponse,
): MappaWebhookError | undefined | Promise<MappaWebhookError | undefined> {
  const { background } = trace;
  if (background === undefined) return endTrace(receiver, trace, response, undefined);
  return background.then(
    (late) => endTrace(receiver, trace, response, late),
    (error: unknown) => endTrace(receiver, trace, response, unexpected(error)),
  );
}

function newMessage(trace: DeliveryTrace, method: string): MappaDeliveryMessage {
  const message: MappaDeliveryMessage = {
    method,
    startedAt: trace.startedAt,
    timings: trace.timings,
  };
  trace.message = message;
  return message;
}

/** A traced delivery without channel subscribers: the instrumentation's scope and the log. */
async function handleScoped<TContext>(
  receiver: Receiver<TContext>,
  input: WebhookRequestInput<TContext>,
  trace: DeliveryTrace,
): Promise<WebhookResponse> {
  const response = await handleDelivery(receiver, input, trace);
  const finished = finishTrace(receiver, trace, response);
  if (finished instanceof Promise) finished.catch(() => {});
  return response;
}

function handleTraced<TContext>(
  receiver: Receiver<TContext>,
  input: WebhookRequestInput<TContext>,
): Promise<WebhookResponse> {
  const trace = new DeliveryTrace(receiver.instrumentation, input.method);
  const channel = deliveryChannelActive() ? getDeliveryChannel() : undefined;
  if (channel === undefined) {
    // An instrumentation that declined the delivery (no SDK recording anything) costs no more.
    if (trace.scope === undefined && !receiver.logSuccess) {
      return handleDelivery(receiver, input, undefined);
    }
    return handleScoped(receiver, input, trace);
  }
  // The channel's promise settles when the delivery's work is over (after the background work
  // of ack-first), rejecting with the failure so subscribers see `error`; the answer goes out
  // as soon as it is ready.
  let answered = false;
  let answer: (response: WebhookResponse) => void = () => {};
  const response = new Promise<WebhookResponse>((resolve) => {
    answer = (value) => {
      answered = true;
      resolve(value);
    };
  });
  channel
    .tracePromise(
      async () => {
        const result = await handleDelivery(receiver, input, trace);
        answer(result);
        const failure = await finishTrace(receiver, trace, result);
        if (failure !== undefined) throw failure;
      },
      newMessage(trace, input.method),
    )
    .catch((error: unknown) => {
      if (!answered) answer(answerError(receiver, unexpected(error)));
    });
  return response;
}

/**
 * An answer the receiver gives before a delivery reached {@link handle} (a body it could not
 * read, an adapter's own error), traced like a delivery.
 */
function answerNow<TContext>(
  receiver: Receiver<TContext>,
  method: string,
  raw: unknown,
): WebhookResponse {
  if (receiver.instrumentation === undefined && !deliveryChannelActive()) {
    return answerError(receiver, raw);
  }
  const trace = new DeliveryTrace(receiver.instrumentation, method);
  const channel = deliveryChannelActive() ? getDeliveryChannel() : undefined;
  if (channel === undefined) {
    const response = answerError(receiver, raw);
    if (trace.scope !== undefined) endTrace(receiver, trace, response, undefined);
    return response;
  }
  let response: WebhookResponse | undefined;
  try {
    channel.traceSync(
      () => {
        response = answerError(receiver, raw);
        const failure = endTrace(receiver, trace, response, undefined);
        if (failure !== undefined) throw failure;
      },
      newMessage(trace, method),
    );
  } catch {
    // The failure went to the channel's subscribers.
  }
  return response ?? answerError(receiver, raw);
}

/** The whole delivery, step by step. Always resolves to an answer; never rejects. */
async function handleDelivery<TContext>(
  receiver: Receiver<TContext>,
  input: WebhookRequestInput<TContext>,
  trace: DeliveryTrace | undefined,
): Promise<WebhookResponse> {
  try {
    const rejected = checkRequest(receiver, input);
    if (rejected !== undefined) return rejected;

    let verified: Verified;
    const verifying = trace?.step("verify");
    try {
      const checked = verifyAndParse(receiver, input);
      verified = checked instanceof Promise ? await checked : checked;
    } catch (error) {
      verifying?.end(error);
      return answerError(receiver, error);
    }
    verifying?.end();
    const { event, verification } = verified;
    trace?.verified(event);
    input.onVerified?.(event);

    let token: string | undefined;
    if (receiver.store !== undefined && event.idempotencyKey !== undefined) {
      const claimed = await claimEvent(receiver, event, verification, trace);
      if (!("token" in claimed)) return claimed;
      token = claimed.token;
    }

    if (receiver.ackFirst) return acknowledgeFirst(receiver, input, verified, token, trace);

    const context = input.context as TContext;
    let failure: MappaWebhookError | undefined;
    if (token === undefined) {
      // No claim to record: run the handlers straight, awaiting only what returns a promise.
      try {
        const running = runHandlers(receiver, event, context, trace);
        if (running !== undefined) await running;
      } catch (error) {
        failure = handlerFailed(error);
      }
    } else {
      failure = await runAndSettle(
        receiver,
        event,
        context,
        event.idempotencyKey as string,
        token,
        trace,
      );
    }
    if (failure !== undefined) return answerError(receiver, failure, "handler", event);
    return success(event, verification, false);
  } catch (error) {
    // Anything unexpected (a throwing getter in headers, a throwing onVerified) is still a
    // typed answer.
    return answerError(receiver, unexpected(error));
  }
}

function toResponse(result: WebhookResponse): Response {
  return new Response(result.body, { status: result.status, headers: result.headers });
}

/** A Fetch `Request` into {@link handle}: the body read within the size limit and deadline. */
async function handleFetchRequest<TContext>(
  receiver: Receiver<TContext>,
  request: Request,
  requestOptions: { context?: TContext; waitUntil?: (promise: Promise<unknown>) => void },
): Promise<Response> {
  if (request.method.toUpperCase() !== "POST") {
    return toResponse(
      await handle(receiver, { method: request.method, headers: request.headers, rawBody: "" }),
    );
  }
  if (request.bodyUsed) {
    return toResponse(
      answerNow(
        receiver,
        request.method,
        new MappaWebhookError(
          "body_already_parsed",
          "The request body was already read before the webhook handler, so its exact bytes are gone. Do not call request.json()/text()/formData() (or a body-parsing middleware) before handing the request to the Mappa handler.",
        ),
      ),
    );
  }
  const { maxBodyBytes } = receiver;
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBodyBytes) {
    return toResponse(answerNow(receiver, request.method, payloadTooLarge(maxBodyBytes)));
  }
  let rawBody: Uint8Array;
  try {
    rawBody = await readBodyWithLimit(request.body, maxBodyBytes, {
      timeoutMs: receiver.bodyTimeoutMs,
    });
  } catch (error) {
    return toResponse(answerNow(receiver, request.method, error));
  }
  const input: WebhookRequestInput<TContext> = {
    method: request.method,
    headers: request.headers,
    rawBody,
  };
  if (requestOptions.context !== undefined) input.context = requestOptions.context;
  if (requestOptions.waitUntil !== undefined) input.waitUntil = requestOptions.waitUntil;
  return toResponse(await handle(receiver, input));
}

/** Checks the options once, so a mistake fails at start-up rather than on a delivery. */
function createReceiver<TContext>(options: MappaWebhooksOptions<TContext>): Receiver<TContext> {
  if (options === null || typeof options !== "object") {
    throw new MappaWebhookError(
      "invalid_options",
      "createMappaWebhooks needs an options object with `secret`.",
    );
  }
  const secrets = normalizeSecrets(options.secret);
  checkNumber("toleranceSec", options.toleranceSec, 0);
  checkNumber("maxBodyBytes", options.maxBodyBytes, 0);
  checkNumber("bodyTimeoutMs", options.bodyTimeoutMs, 1, MAX_TIMER_MS);
  checkNumber("leaseMs", options.leaseMs, 1, MAX_TIMER_MS);
  checkNumber("completedTtlMs", options.completedTtlMs, 1, MAX_TIMER_MS);
  if (options.ack !== undefined && options.ack !== "first" && options.ack !== "after-handlers") {
    throw new MappaWebhookError("invalid_options", '`ack` must be "after-handlers" or "first".');
  }
  const log = resolveLogger(
    options.logger,
    options.logLevel,
    (message) => new MappaWebhookError("invalid_options", message),
  );
  const instrumentation = options.instrumentation;
  if (
    instrumentation !== undefined &&
    (instrumentation === null || typeof instrumentation.startDelivery !== "function")
  ) {
    throw new MappaWebhookError(
      "invalid_options",
      "`instrumentation` must have a `startDelivery` method, e.g. `openTelemetry()` from @mappa-webhooks/opentelemetry.",
    );
  }
  const handlerMap = options.on ?? {};
  for (const [type, handler] of Object.entries(handlerMap)) {
    if (typeof handler !== "function") {
      throw new MappaWebhookError(
        "invalid_options",
        `The handler for "${type}" in \`on\` is not a function.`,
      );
    }
  }
  return {
    options,
    secrets,
    handlerMap,
    listeners: new Map(),
    anyListeners: new Set(),
    store:
      options.idempotency === false
        ? undefined
        : (options.idempotency ?? createMemoryIdempotencyStore()),
    leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS,
    ttlMs: options.completedTtlMs ?? DEFAULT_COMPLETED_TTL_MS,
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    bodyTimeoutMs: options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
    ackFirst: options.ack === "first",
    log,
    logSuccess: logs(log, "info"),
    instrumentation,
  };
}

/**
 * Creates a framework-neutral Mappa webhook receiver. Adapters only translate requests into
 * {@link MappaWebhooks.handle} (or a Fetch `Request` into `handleRequest`) and write the result.
 *
 * Answers: 200 handled (or a known duplicate); 401 any signature failure; 400 invalid JSON or
 * not an event; 405 not a POST; 408 the body did not arrive within `bodyTimeoutMs`; 409 the
 * same event is being handled right now; 413 body over `maxBodyBytes`; 500 a handler threw
 * (Mappa retries); 503 the idempotency store failed.
 *
 * @example
 * ```ts
 * const webhooks = createMappaWebhooks({
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   on: {
 *     "report.completed": async (event) => saveReport(event.data.reportId),
 *     "report.failed": (event) => console.error(event.data.error.code),
 *   },
 * });
 * export default { fetch: (request: Request) => webhooks.handleRequest(request) };
 * ```
 */
export function createMappaWebhooks<TContext = unknown>(
  options: MappaWebhooksOptions<TContext>,
): MappaWebhooks<TContext> {
  const receiver = createReceiver(options);
  return {
    maxBodyBytes: receiver.maxBodyBytes,
    bodyTimeoutMs: receiver.bodyTimeoutMs,
    handle: (input) => handle(receiver, input),
    handleRequest: (request, requestOptions = {}) =>
      handleFetchRequest(receiver, request, requestOptions),
    verifyAndParse: async (input) => (await verifyAndParse(receiver, input)).event,
    errorResponse: (error) => answerNow(receiver, "POST", error),
    on(type, handler) {
      let set = receiver.listeners.get(type);
      if (set === undefined) {
        set = new Set();
        receiver.listeners.set(type, set);
      }
      const fn = handler as Handler<TContext>;
      set.add(fn);
      return () => set.delete(fn);
    },
    onAny(handler) {
      receiver.anyListeners.add(handler);
      return () => receiver.anyListeners.delete(handler);
    },
  };
}
