import {
  DEFAULT_BODY_TIMEOUT_MS,
  DEFAULT_MAX_BODY_BYTES,
  payloadTooLarge,
  readBodyWithLimit,
} from "./body.js";
import { isMappaWebhookError, MappaWebhookError } from "./errors.js";
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
  type ClaimResult,
  createMemoryIdempotencyStore,
  DEFAULT_COMPLETED_TTL_MS,
  DEFAULT_LEASE_MS,
  type IdempotencyStore,
} from "./idempotency.js";
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
export type MappaErrorPhase = "request" | "handler" | "idempotency" | "background";

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

const RECEIVED = JSON.stringify({ received: true });
const DUPLICATE = JSON.stringify({ received: true, duplicate: true });

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

function checkNumber(name: string, value: number | undefined, min: number): void {
  if (
    value !== undefined &&
    !(typeof value === "number" && Number.isFinite(value) && value >= min)
  ) {
    throw new MappaWebhookError(
      "invalid_options",
      `\`${name}\` must be a number >= ${min}, got ${String(value)}.`,
    );
  }
}

function toError(
  error: unknown,
  fallback: "handler_failed" | "idempotency_store_failed",
): MappaWebhookError {
  if (isMappaWebhookError(error)) return error;
  const message =
    fallback === "handler_failed"
      ? "A webhook handler threw; answered 500 so Mappa retries the delivery. See `cause`."
      : "The idempotency store failed; answered 503 so Mappa retries the delivery. See `cause`.";
  return new MappaWebhookError(fallback, message, { cause: error });
}

/**
 * Creates a framework-neutral Mappa webhook receiver. Adapters only translate requests into
 * {@link MappaWebhooks.handle} (or a Fetch `Request` into `handleRequest`) and write the result.
 *
 * Answers: 200 handled (or a known duplicate); 401 any signature failure; 400 invalid JSON or
 * not an event; 405 not a POST; 409 the same event is being handled right now; 413 body over
 * `maxBodyBytes`; 500 a handler threw (Mappa retries); 503 the idempotency store failed.
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
  if (options === null || typeof options !== "object") {
    throw new MappaWebhookError(
      "invalid_options",
      "createMappaWebhooks needs an options object with `secret`.",
    );
  }
  const secrets = normalizeSecrets(options.secret);
  checkNumber("toleranceSec", options.toleranceSec, 0);
  checkNumber("maxBodyBytes", options.maxBodyBytes, 0);
  checkNumber("bodyTimeoutMs", options.bodyTimeoutMs, 1);
  checkNumber("leaseMs", options.leaseMs, 1);
  checkNumber("completedTtlMs", options.completedTtlMs, 1);
  if (options.ack !== undefined && options.ack !== "first" && options.ack !== "after-handlers") {
    throw new MappaWebhookError("invalid_options", '`ack` must be "after-handlers" or "first".');
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

  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const bodyTimeoutMs = options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS;
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const ttlMs = options.completedTtlMs ?? DEFAULT_COMPLETED_TTL_MS;
  const store =
    options.idempotency === false
      ? undefined
      : (options.idempotency ?? createMemoryIdempotencyStore());
  const ackFirst = options.ack === "first";
  const listeners = new Map<string, Set<(event: MappaEvent, context: TContext) => unknown>>();
  const anyListeners = new Set<MappaAnyHandler<TContext>>();

  const report = (error: MappaWebhookError, info: MappaErrorInfo) => {
    if (options.onError === undefined) return;
    try {
      options.onError(error, info);
    } catch {
      // onError must never turn an answer into a crash.
    }
  };

  // Responses are built as literals: spreads on this path measurably cost throughput.
  const jsonHeaders = (): Record<string, string> => ({
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
  });
  const success = (
    event: MappaEvent,
    verification: VerifySignatureResult,
    duplicate: boolean,
  ): WebhookResponse => {
    const response: WebhookResponse = {
      status: 200,
      headers: jsonHeaders(),
      body: duplicate ? DUPLICATE : RECEIVED,
      event,
      verification,
    };
    if (duplicate) response.duplicate = true;
    return response;
  };

  const errorResponse = (
    raw: unknown,
    phase: MappaErrorPhase = "request",
    event?: MappaEvent,
  ): WebhookResponse => {
    const error = isMappaWebhookError(raw) ? raw : toError(raw, "handler_failed");
    // A signature failure tells the sender nothing beyond its code; 4xx body errors say more.
    const detailed =
      error.status === 400 || error.status === 405 || error.status === 409 || error.status === 413;
    const body = JSON.stringify(
      detailed ? { error: error.code, message: error.message } : { error: error.code },
    );
    const response: WebhookResponse = { status: error.status, headers: jsonHeaders(), body, error };
    if (event !== undefined) response.event = event;
    if (error.code === "method_not_allowed") response.headers.allow = "POST";
    if (error.code === "event_in_flight") response.headers["retry-after"] = "5";
    if (error.code === "payload_too_large") response.headers.connection = "close";
    report(
      error,
      event === undefined
        ? { phase, status: error.status }
        : { phase, status: error.status, event },
    );
    return response;
  };

  type Verified = { verification: VerifySignatureResult; event: MappaEvent };
  // Synchronous on node:crypto (no promise at all); a promise on Web Crypto.
  const verifyAndParse = (input: {
    headers: HeadersInput;
    rawBody: RawBody;
  }): Verified | Promise<Verified> => {
    const params: VerifySignatureParams = {
      payload: input.rawBody,
      headers: input.headers,
      secret: secrets,
    };
    if (options.toleranceSec !== undefined) params.toleranceSec = options.toleranceSec;
    if (options.now !== undefined) params.now = options.now;
    if (options.headerName !== undefined) params.headerName = options.headerName;
    const checked = verifyNow(params);
    if (checked instanceof Promise) {
      return checked.then((verification) => ({ verification, event: parseEvent(input.rawBody) }));
    }
    return { verification: checked, event: parseEvent(input.rawBody) };
  };

  type Handler = (event: MappaEvent, context: TContext) => unknown;
  /** The handlers an event runs through, in order: its map handler (or onUnknown), then listeners. */
  const handlersFor = (event: MappaEvent): Handler[] => {
    const fns: Handler[] = [];
    const first = event.known ? handlerMap[event.type] : options.onUnknown;
    if (first !== undefined) fns.push(first as Handler);
    const typed = listeners.get(event.type);
    if (typed !== undefined) fns.push(...typed);
    if (anyListeners.size > 0) fns.push(...anyListeners);
    return fns;
  };

  // Handlers are awaited only when they return a promise: a synchronous handler costs no tick.
  const runHandlers = (event: MappaEvent, context: TContext): Promise<void> | undefined => {
    const fns = handlersFor(event);
    for (let i = 0; i < fns.length; i++) {
      const returned = (fns[i] as Handler)(event, context);
      if (isThenable(returned)) return runRemaining(returned, fns, i + 1, event, context);
    }
    return undefined;
  };
  const runRemaining = async (
    pending: PromiseLike<unknown>,
    fns: Handler[],
    from: number,
    event: MappaEvent,
    context: TContext,
  ): Promise<void> => {
    await pending;
    for (let i = from; i < fns.length; i++) await (fns[i] as Handler)(event, context);
  };

  /** Runs the handlers and records the outcome in the store; resolves the failure, if any. */
  const settle = async (
    event: MappaEvent,
    context: TContext,
    key: string | undefined,
    token: string | undefined,
  ): Promise<MappaWebhookError | undefined> => {
    try {
      const running = runHandlers(event, context);
      if (running !== undefined) await running;
    } catch (error) {
      if (store !== undefined && key !== undefined && token !== undefined) {
        await store.release(key, token).catch((releaseError: unknown) => {
          report(toError(releaseError, "idempotency_store_failed"), {
            phase: "idempotency",
            status: 500,
            event,
          });
        });
      }
      return toError(error, "handler_failed");
    }
    if (store !== undefined && key !== undefined && token !== undefined) {
      try {
        await store.complete(key, token, { ttlMs });
      } catch (error) {
        // The effect happened: answering non-2xx would make Mappa run it again.
        report(toError(error, "idempotency_store_failed"), {
          phase: "idempotency",
          status: 200,
          event,
        });
      }
    }
    return undefined;
  };

  const byteLength = (body: RawBody): number =>
    typeof body === "string" ? body.length : (body as Uint8Array | ArrayBuffer).byteLength;

  const handle = async (input: WebhookRequestInput<TContext>): Promise<WebhookResponse> => {
    try {
      if (input.method !== "POST" && input.method.toUpperCase() !== "POST") {
        return errorResponse(
          new MappaWebhookError(
            "method_not_allowed",
            `Method ${input.method} is not allowed: Mappa delivers webhooks with POST.`,
          ),
        );
      }
      // Strings are counted in UTF-16 units, a lower bound of their byte length; adapters
      // enforce the exact limit while reading.
      if (input.rawBody != null && byteLength(input.rawBody) > maxBodyBytes) {
        return errorResponse(payloadTooLarge(maxBodyBytes));
      }
      let verified: Verified;
      try {
        const checked = verifyAndParse(input);
        verified = checked instanceof Promise ? await checked : checked;
      } catch (error) {
        return errorResponse(error);
      }
      const { event, verification } = verified;
      input.onVerified?.(event);
      const context = input.context as TContext;
      const key = event.idempotencyKey;

      let token: string | undefined;
      if (store !== undefined && key !== undefined) {
        let claim: ClaimResult;
        try {
          claim = await store.claim(key, { leaseMs });
        } catch (error) {
          return errorResponse(toError(error, "idempotency_store_failed"), "idempotency", event);
        }
        if (claim.status === "completed") return success(event, verification, true);
        if (claim.status === "in_flight") {
          return errorResponse(
            new MappaWebhookError(
              "event_in_flight",
              `Event ${key} is being handled by another delivery right now; retry later.`,
            ),
            "idempotency",
            event,
          );
        }
        token = claim.token;
      }

      if (ackFirst) {
        const background = settle(event, context, key, token).then((error) => {
          if (error !== undefined) report(error, { phase: "background", status: 200, event });
        });
        if (input.waitUntil !== undefined) input.waitUntil(background);
        return success(event, verification, false);
      }
      if (token === undefined) {
        // No claim to record: run the handlers straight, awaiting only what returns a promise.
        try {
          const running = runHandlers(event, context);
          if (running !== undefined) await running;
        } catch (error) {
          return errorResponse(toError(error, "handler_failed"), "handler", event);
        }
        return success(event, verification, false);
      }
      const failure = await settle(event, context, key, token);
      if (failure !== undefined) return errorResponse(failure, "handler", event);
      return success(event, verification, false);
    } catch (error) {
      // Anything unexpected (a throwing getter in headers, ...) is still a typed answer.
      return errorResponse(toError(error, "handler_failed"));
    }
  };

  const toResponse = (result: WebhookResponse): Response =>
    new Response(result.body, { status: result.status, headers: result.headers });

  return {
    maxBodyBytes,
    bodyTimeoutMs,
    handle,
    verifyAndParse: async (input) => (await verifyAndParse(input)).event,
    errorResponse: (error) => errorResponse(error),
    async handleRequest(request, requestOptions = {}) {
      if (request.method.toUpperCase() !== "POST") {
        return toResponse(
          await handle({ method: request.method, headers: request.headers, rawBody: "" }),
        );
      }
      const declared = Number(request.headers.get("content-length") ?? Number.NaN);
      if (declared > maxBodyBytes) return toResponse(errorResponse(payloadTooLarge(maxBodyBytes)));
      let rawBody: Uint8Array;
      try {
        rawBody = await readBodyWithLimit(request.body, maxBodyBytes, { timeoutMs: bodyTimeoutMs });
      } catch (error) {
        return toResponse(errorResponse(error));
      }
      const input: WebhookRequestInput<TContext> = {
        method: request.method,
        headers: request.headers,
        rawBody,
      };
      if (requestOptions.context !== undefined) input.context = requestOptions.context;
      if (requestOptions.waitUntil !== undefined) input.waitUntil = requestOptions.waitUntil;
      return toResponse(await handle(input));
    },
    on(type, handler) {
      let set = listeners.get(type);
      if (set === undefined) {
        set = new Set();
        listeners.set(type, set);
      }
      const fn = handler as (event: MappaEvent, context: TContext) => unknown;
      set.add(fn);
      return () => set.delete(fn);
    },
    onAny(handler) {
      anyListeners.add(handler);
      return () => anyListeners.delete(handler);
    },
  };
}
