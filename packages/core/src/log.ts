import type { MappaWebhookError } from "./errors.js";
import type { MappaEvent } from "./events.js";

/**
 * Where the receiver (and the workers) write their log lines: anything with `debug`, `info`,
 * `warn` and `error` methods that take a message string, so `console`, a pino logger and a
 * winston logger all fit as they are.
 *
 * @example
 * ```ts
 * import pino from "pino";
 * createMappaWebhooks({ secret, logger: pino() });
 * ```
 */
export interface MappaLogger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** The lowest level written; the default `"warn"` writes rejected and failed deliveries only. */
export type MappaLogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<MappaLogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A logger with its level applied, or `undefined` when nothing is written. */
export interface ResolvedLogger {
  logger: MappaLogger;
  /** The rank of the lowest level written. */
  min: number;
}

/**
 * The logger a receiver (or worker) writes to: `console` at `"warn"` unless told otherwise;
 * `false` writes nothing. Throws on anything else, so a typo fails at start-up.
 */
export function resolveLogger(
  logger: MappaLogger | false | undefined,
  level: MappaLogLevel | undefined,
  fail: (message: string) => Error,
): ResolvedLogger | undefined {
  if (level !== undefined && !Object.hasOwn(RANK, level)) {
    throw fail(`\`logLevel\` must be "debug", "info", "warn" or "error", got ${String(level)}.`);
  }
  if (logger === false) return undefined;
  const chosen = logger ?? (globalThis as { console?: MappaLogger }).console;
  if (chosen === undefined) return undefined;
  for (const method of ["debug", "info", "warn", "error"] as const) {
    if (typeof (chosen as unknown as Record<string, unknown>)[method] !== "function") {
      throw fail(
        `\`logger\` must have debug, info, warn and error methods (console, pino and winston do), or be \`false\` to log nothing; its \`${method}\` is not a function.`,
      );
    }
  }
  return { logger: chosen, min: RANK[level ?? "warn"] };
}

/** Writes one line at `level` when the logger takes it; a throwing logger never breaks an answer. */
export function writeLog(
  resolved: ResolvedLogger | undefined,
  level: MappaLogLevel,
  message: string,
): void {
  if (resolved === undefined || RANK[level] < resolved.min) return;
  try {
    resolved.logger[level](message);
  } catch {
    // Logging must never turn an answer into a crash.
  }
}

/** True when a line at `level` would be written: lets callers skip building it. */
export function logs(resolved: ResolvedLogger | undefined, level: MappaLogLevel): boolean {
  return resolved !== undefined && RANK[level] >= resolved.min;
}

const PREFIX = "@mappa-webhooks: ";

/** The message without the package prefix every error message starts with. */
function bare(message: string): string {
  return message.startsWith(PREFIX) ? message.slice(PREFIX.length) : message;
}

/** The first line of a cause's message, so a handler's own error shows without its stack. */
function causeText(cause: unknown): string | undefined {
  if (cause === undefined) return undefined;
  const text = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
  const line = text.split("\n", 1)[0] ?? "";
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** Which event a line is about, when it is known: its type and id (or key). */
function eventText(event: MappaEvent | undefined): string {
  if (event === undefined) return "";
  const id = event.id ?? event.idempotencyKey;
  return id === undefined ? ` (${event.type})` : ` (${event.type} ${id})`;
}

/**
 * One log line for a failure: the status and the code, the event when known, and the error's
 * message, which says how to fix it. Never the body or a secret: messages never hold them, and
 * a cause shows only its first line.
 */
export function failureLine(
  what: string,
  status: number,
  error: MappaWebhookError,
  event: MappaEvent | undefined,
): string {
  const cause = status >= 500 ? causeText(error.cause) : undefined;
  return `${PREFIX}${what} ${status} ${error.code}${eventText(event)}: ${bare(error.message)}${cause === undefined ? "" : ` Cause: ${cause}`}`;
}

/** One log line for a delivery answered 2xx (written at `info`, so only when asked for). */
export function successLine(outcome: string, status: number, event: MappaEvent): string {
  return `${PREFIX}delivery ${outcome} ${status}${eventText(event)}`;
}

/**
 * A logger that follows the receiver's `logger` and `logLevel` options, for workers, recovery
 * and tools: `console` at `"warn"` by default, nothing with `logger: false`, lines below the
 * level dropped, and a throwing logger never throws back.
 *
 * @example
 * ```ts
 * const log = createLogWriter({ logger: options.logger, logLevel: options.logLevel });
 * log.error(`@mappa-webhooks/postgres: event ${key} parked as failed: ${error.message}`);
 * ```
 */
export function createLogWriter(
  options: { logger?: MappaLogger | false | undefined; logLevel?: MappaLogLevel | undefined } = {},
): MappaLogger {
  const resolved = resolveLogger(options.logger, options.logLevel, (message) => {
    const error = new Error(`${PREFIX}${message}`);
    error.name = "TypeError";
    return error;
  });
  return {
    debug: (message) => writeLog(resolved, "debug", message),
    info: (message) => writeLog(resolved, "info", message),
    warn: (message) => writeLog(resolved, "warn", message),
    error: (message) => writeLog(resolved, "error", message),
  };
}
