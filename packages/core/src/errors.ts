/**
 * Every way a delivery or a configuration can fail, as a closed union.
 *
 * Signature codes answer 401, body codes 400, and configuration or transport codes the status
 * given in {@link statusForCode}.
 */
export type MappaWebhookErrorCode =
  // signature checks, in the order they run
  | "missing_signature"
  | "malformed_signature"
  | "timestamp_outside_tolerance"
  | "signature_mismatch"
  // the body
  | "invalid_json"
  | "invalid_event"
  // the request
  | "method_not_allowed"
  | "payload_too_large"
  | "event_in_flight"
  | "body_timeout"
  | "request_aborted"
  // the receiver
  | "handler_failed"
  | "handler_timeout"
  | "idempotency_store_failed"
  // recovery (createMappaRecovery)
  | "mappa_api_failed"
  | "job_not_recoverable"
  // configuration and transport mistakes the adapters detect
  | "missing_secret"
  | "invalid_options"
  | "body_already_parsed";

const STATUS: Record<MappaWebhookErrorCode, number> = {
  missing_signature: 401,
  malformed_signature: 401,
  timestamp_outside_tolerance: 401,
  signature_mismatch: 401,
  invalid_json: 400,
  invalid_event: 400,
  method_not_allowed: 405,
  payload_too_large: 413,
  event_in_flight: 409,
  body_timeout: 408,
  // The client is gone, so nothing is sent; 400 is what a log or a test sees.
  request_aborted: 400,
  handler_failed: 500,
  // A handler (in a queue worker or an inbox) did not settle within its time limit.
  handler_timeout: 500,
  idempotency_store_failed: 503,
  // Mappa's API answered an error or could not be reached.
  mappa_api_failed: 502,
  // A tracked job that ended canceled, is stuck, or that the API no longer knows.
  job_not_recoverable: 422,
  missing_secret: 500,
  invalid_options: 500,
  body_already_parsed: 500,
};

/** True for a code of the closed union (own keys only: `"toString"` is not a code). */
export function isErrorCode(code: unknown): code is MappaWebhookErrorCode {
  return typeof code === "string" && Object.hasOwn(STATUS, code);
}

/** The HTTP status a receiver answers for an error code. */
export function statusForCode(code: MappaWebhookErrorCode): number {
  return isErrorCode(code) ? STATUS[code] : 500;
}

/** Options for {@link MappaWebhookError}. */
export interface MappaWebhookErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
  /** What probably went wrong, when it can be seen without revealing anything secret. */
  hint?: string;
  /**
   * The short fix, safe to send to the sender (never a secret or a stack trace). For
   * `body_already_parsed` it defaults to the message's sentences after the first, the part that
   * says what to change.
   */
  fix?: string;
}

// The first sentence says what happened, the rest how to fix it ("e.g. a" never ends one).
const SENTENCE_END = /(?<!\be\.g)\.\s+(?=[A-Z`])/;

function fixIn(message: string): string | undefined {
  const end = SENTENCE_END.exec(message);
  return end === null ? undefined : message.slice(end.index + end[0].length);
}

/**
 * The one error class of `@mappa-webhooks/*`. Branch on `code`, never on the message.
 *
 * Messages say what is wrong and what to do. They never contain a secret or an expected
 * signature, so they are safe to log.
 *
 * @example
 * ```ts
 * try {
 *   await verifySignature({ payload, headers, secret });
 * } catch (err) {
 *   if (err instanceof MappaWebhookError && err.code === "timestamp_outside_tolerance") {
 *     console.warn(err.message); // check this server's clock
 *   }
 * }
 * ```
 */
export class MappaWebhookError extends Error {
  override readonly name = "MappaWebhookError";
  /** Machine-readable reason, from a closed union. */
  readonly code: MappaWebhookErrorCode;
  /** The HTTP status a receiver should answer with. */
  readonly status: number;
  /** A likely cause, when one can be seen (e.g. the body was re-serialised). */
  readonly hint: string | undefined;
  /** What to change, safe to send to the sender; receivers add it to a `body_already_parsed` answer. */
  readonly fix: string | undefined;

  constructor(
    code: MappaWebhookErrorCode,
    message: string,
    options: MappaWebhookErrorOptions = {},
  ) {
    const hint = options.hint;
    super(
      `@mappa-webhooks: ${message}${hint ? ` Hint: ${hint}` : ""}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.code = code;
    // A code from outside the union (plain JavaScript callers) must still give a valid status.
    this.status = isErrorCode(code) ? STATUS[code] : 500;
    this.hint = hint;
    this.fix = options.fix ?? (code === "body_already_parsed" ? fixIn(message) : undefined);
  }
}

/**
 * True for a {@link MappaWebhookError}, also across copies of the package (a bundled and a
 * node_modules copy would each have their own class).
 *
 * @example
 * ```ts
 * if (isMappaWebhookError(err) && err.status === 401) return new Response(null, { status: 401 });
 * ```
 */
export function isMappaWebhookError(value: unknown): value is MappaWebhookError {
  return (
    value instanceof MappaWebhookError ||
    (value instanceof Error &&
      value.name === "MappaWebhookError" &&
      isErrorCode((value as unknown as { code?: unknown }).code))
  );
}
