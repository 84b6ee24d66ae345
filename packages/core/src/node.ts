// The Node request path every Node adapter shares (`@mappa-webhooks/core/node`): reading an
// `IncomingMessage` within the limits, telling a consumed or aborted stream apart, the early
// 413 from a declared length, and a response writer that never writes twice, never writes to
// a client that left, and never resets a connection whose rejected body is still arriving.
// Node-only: the web build never includes this file.
import { payloadTooLarge, readBodyWithLimit, requestAborted } from "./body.js";
import { MappaWebhookError } from "./errors.js";
import type { MappaWebhooks, WebhookRequestInput, WebhookResponse } from "./pipeline.js";

/**
 * The path adapters listen on unless told otherwise.
 *
 * @example
 * ```ts
 * console.log(`Point Mappa at https://your.host${DEFAULT_WEBHOOK_PATH}`);
 * ```
 */
export const DEFAULT_WEBHOOK_PATH = "/webhooks/mappa";

/** The parts of a Node `IncomingMessage` the reader uses. */
export interface NodeWebhookRequest {
  method?: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  readableEnded?: boolean;
  readableDidRead?: boolean;
  readable?: boolean;
  complete?: boolean;
  destroyed?: boolean;
  socket?: NodeSocketLike | null;
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
  pause(): unknown;
  resume(): unknown;
}

// biome-ignore lint/suspicious/noExplicitAny: Node's emitters type their listeners with any[]
type Listener = (...args: any[]) => void;

/** The parts of a Node `ServerResponse` the writer uses. */
export interface NodeWebhookResponse {
  statusCode: number;
  headersSent: boolean;
  destroyed?: boolean;
  writableEnded?: boolean;
  setHeader(name: string, value: string): unknown;
  end(body: string): unknown;
}

/** The parts of a `net.Socket` the lingering close uses. */
interface NodeSocketLike {
  destroyed: boolean;
  writable: boolean;
  destroySoon?: () => void;
  end(): unknown;
  destroy(): unknown;
  resume(): unknown;
  on(event: string, listener: Listener): unknown;
  once(event: string, listener: Listener): unknown;
}

/**
 * `"respond"` (the adapter answers every delivery) or `"next"` (a new, verified event whose
 * handlers succeeded goes on to the framework's next handler, which answers). Throws
 * `invalid_options` for anything else.
 *
 * @example
 * ```ts
 * const mode = adapterMode(options.mode); // "respond" by default
 * ```
 */
export function adapterMode(mode: unknown): "respond" | "next" {
  if (mode === undefined || mode === "respond") return "respond";
  if (mode === "next") return "next";
  throw new MappaWebhookError(
    "invalid_options",
    `\`mode\` must be "respond" or "next", got ${JSON.stringify(mode) ?? String(mode)}.`,
  );
}

/**
 * True when the delivery goes on to the framework's next handler in `mode: "next"`: a new
 * event (not a duplicate) whose handlers succeeded. Everything else is answered by the adapter.
 *
 * @example
 * ```ts
 * if (passesToNext(mode, result)) return next();
 * ```
 */
export function passesToNext(mode: "respond" | "next", result: WebhookResponse): boolean {
  return mode === "next" && result.status === 200 && result.duplicate !== true;
}

/**
 * True once something read the request stream (a body parser), so its bytes cannot be read
 * again. `_body` is the flag body-parser (Express) sets.
 *
 * @example
 * ```ts
 * if (isRequestConsumed(req)) console.warn("a body parser ran before the webhook");
 * ```
 */
export function isRequestConsumed(
  req: Pick<NodeWebhookRequest, "readableEnded" | "readableDidRead" | "complete" | "readable">,
): boolean {
  return (
    req.readableEnded === true ||
    req.readableDidRead === true ||
    (req.complete === true && req.readable === false) ||
    (req as { _body?: unknown })._body === true
  );
}

/** The length a request declares, or NaN without one. */
function declaredLength(headers: NodeWebhookRequest["headers"]): number {
  const value = headers["content-length"];
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined || first === "" ? Number.NaN : Number(first);
}

/** Options of {@link readNodeRequestBody}. */
export interface ReadNodeRequestOptions {
  /**
   * The fix named in the `body_already_parsed` error when something read the stream first:
   * which parser to move, in the framework's words.
   */
  consumedMessage: string;
  /** The framework knows the body was parsed already (e.g. a `req.body` it set). */
  consumed?: boolean;
  /** The stream to read instead of `req` (Fastify's `preParsing` payload); `req` gives the headers. */
  stream?: Pick<NodeWebhookRequest, Exclude<keyof NodeWebhookRequest, "headers" | "method">>;
}

/**
 * Reads a Node request's raw body within the receiver's `maxBodyBytes` and `bodyTimeoutMs`.
 * Rejects with `body_already_parsed` (something read the stream first), `request_aborted`
 * (the client already left, or left mid-body), `payload_too_large` (a declared length over
 * the limit is refused before reading anything; a longer body is stopped as it streams) or
 * `body_timeout`.
 *
 * @example
 * ```ts
 * const raw = await readNodeRequestBody(req, webhooks, { consumedMessage: "Mount it before express.json()." });
 * ```
 */
export function readNodeRequestBody(
  req: NodeWebhookRequest,
  limits: Pick<MappaWebhooks<never>, "maxBodyBytes" | "bodyTimeoutMs">,
  options: ReadNodeRequestOptions,
): Promise<Uint8Array> {
  const stream = options.stream ?? req;
  if (options.consumed === true || isRequestConsumed(stream)) {
    return Promise.reject(new MappaWebhookError("body_already_parsed", options.consumedMessage));
  }
  // The client left before anything read the stream: no event will ever come from it.
  if (stream.destroyed === true) return Promise.reject(requestAborted());
  const limit = limits.maxBodyBytes;
  if (declaredLength(req.headers) > limit) return Promise.reject(payloadTooLarge(limit));
  return readBodyWithLimit(stream as unknown as AsyncIterable<Uint8Array>, limit, {
    timeoutMs: limits.bodyTimeoutMs,
  });
}

/** Options of {@link receiveNodeRequest}. */
export interface ReceiveNodeRequestOptions<TContext>
  extends ReadNodeRequestOptions,
    Pick<WebhookRequestInput<TContext>, "onVerified" | "waitUntil"> {
  /** The handlers' second argument. */
  context?: TContext;
  /**
   * The exact bytes when they were kept before the stream was read (a parser's `verify` hook,
   * a platform's `rawBody`); the stream is then not read.
   */
  rawBody?: Uint8Array | undefined;
  /** Called with the bytes read from the stream, before the delivery is handled. */
  onRawBody?: (rawBody: Uint8Array) => void;
}

/**
 * Runs one Node request through the receiver: other methods than POST are answered 405 without
 * reading anything, the body is read with {@link readNodeRequestBody} (its failures become the
 * core's answers, reported once to `onError`), then the delivery is handled. Resolves with the
 * answer for {@link writeNodeResponse} (or the framework's own reply).
 *
 * @example
 * ```ts
 * const result = await receiveNodeRequest(webhooks, req, { context: { req, res }, consumedMessage });
 * writeNodeResponse(req, res, result);
 * ```
 */
export async function receiveNodeRequest<TContext>(
  webhooks: MappaWebhooks<TContext>,
  req: NodeWebhookRequest,
  options: ReceiveNodeRequestOptions<TContext>,
): Promise<WebhookResponse> {
  const method = req.method ?? "GET";
  if (method.toUpperCase() !== "POST") {
    return webhooks.handle({ method, headers: req.headers, rawBody: "" });
  }
  let rawBody: Uint8Array;
  try {
    if (options.rawBody !== undefined) rawBody = options.rawBody;
    else {
      rawBody = await readNodeRequestBody(req, webhooks, options);
      options.onRawBody?.(rawBody);
    }
  } catch (error) {
    return webhooks.errorResponse(error);
  }
  const input: WebhookRequestInput<TContext> = { method, headers: req.headers, rawBody };
  if (options.context !== undefined) input.context = options.context;
  if (options.onVerified !== undefined) input.onVerified = options.onVerified;
  if (options.waitUntil !== undefined) input.waitUntil = options.waitUntil;
  return webhooks.handle(input);
}

/** How long, and how much, a rejected body may keep arriving after its answer. */
const LINGER_MS = 10_000;
const LINGER_BYTES = 64 * 1024 * 1024;

/**
 * Before an answer to a request whose body has not fully arrived (413, 408): Node closes a
 * `connection: close` socket as soon as the answer is written, and bytes of the body still
 * arriving then make the kernel reset the connection; the reset can throw the answer away
 * before the client read it (the client sees EPIPE or ECONNRESET instead of the 413). This
 * half-closes instead: the answer goes out, what the client still sends is read and
 * discarded, and the socket closes once the client stopped, or after 10 s or 64 MiB.
 * Call it right before answering through the framework's own reply (Fastify);
 * {@link writeNodeResponse} calls it itself.
 *
 * @example
 * ```ts
 * lingerAfterEarlyAnswer(request.raw);
 * reply.code(413).send(body);
 * ```
 */
export function lingerAfterEarlyAnswer(req: NodeWebhookRequest): void {
  const socket = req.socket;
  if (req.complete === true || socket == null || socket.destroyed) return;
  // The stream may be paused (the reader stopped at the limit): let the rest flow to nowhere.
  req.on("data", () => {});
  req.resume();
  if (Object.hasOwn(socket, "destroySoon")) return; // already lingering
  socket.destroySoon = () => {
    if (socket.writable) socket.end();
    let discarded = 0;
    const close = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    const timer = setTimeout(close, LINGER_MS);
    timer.unref?.();
    socket.on("data", (chunk: Uint8Array) => {
      discarded += chunk.byteLength;
      if (discarded > LINGER_BYTES) close();
    });
    socket.once("end", close);
    socket.once("close", () => clearTimeout(timer));
    socket.resume();
  };
}

/**
 * Writes the core's answer to a Node response, safely: nothing when a handler already answered
 * through the response, when the response or the client is gone, or for `request_aborted`
 * (nobody is left to read it); a rejected body still arriving is drained instead of reset
 * (see {@link lingerAfterEarlyAnswer}).
 *
 * @example
 * ```ts
 * writeNodeResponse(req, res, await webhooks.handle({ method, headers, rawBody }));
 * ```
 */
export function writeNodeResponse(
  req: NodeWebhookRequest,
  res: NodeWebhookResponse,
  result: WebhookResponse,
): void {
  if (!canAnswer(res, result)) return;
  lingerAfterEarlyAnswer(req);
  res.statusCode = result.status;
  for (const [name, value] of Object.entries(result.headers)) res.setHeader(name, value);
  res.end(result.body);
}

/**
 * False when an answer must not be written: a handler already answered, the response or its
 * connection is gone, or the client left (`request_aborted`).
 *
 * @example
 * ```ts
 * if (canAnswer(reply.raw, result)) reply.code(result.status).send(result.body);
 * ```
 */
export function canAnswer(
  res: Pick<NodeWebhookResponse, "headersSent" | "destroyed" | "writableEnded">,
  result: WebhookResponse,
): boolean {
  return !(
    res.headersSent ||
    res.destroyed === true ||
    res.writableEnded === true ||
    result.error?.code === "request_aborted"
  );
}

/** How the framework in front matches a path to a route. */
export interface PathMatchOptions {
  /** `/Webhooks/Mappa` is not `/webhooks/mappa`. Express: off by default; Fastify: on. */
  caseSensitive?: boolean;
  /** `/webhooks/mappa/` is not `/webhooks/mappa`. Express: off by default; Fastify: on. */
  strict?: boolean;
}

/**
 * A matcher of request URLs (query ignored) against one or more paths, matching as the
 * framework routes: by default as Express does (case-insensitive, an optional trailing slash).
 *
 * @example
 * ```ts
 * const matches = webhookPathMatcher(["/webhooks/mappa"], { caseSensitive: false, strict: false });
 * matches("/WEBHOOKS/MAPPA/?x=1"); // true
 * ```
 */
export function webhookPathMatcher(
  paths: Iterable<string>,
  options: PathMatchOptions = {},
): (url: string | undefined) => boolean {
  const { caseSensitive = false, strict = false } = options;
  const normalise = (path: string) => {
    let out = caseSensitive ? path : path.toLowerCase();
    if (!strict && out.length > 1 && out.endsWith("/")) out = out.slice(0, -1);
    return out;
  };
  const wanted = new Set([...paths].map(normalise));
  return (url) => {
    const raw = url ?? "/";
    const query = raw.indexOf("?");
    return wanted.has(normalise(query === -1 ? raw : raw.slice(0, query)));
  };
}
