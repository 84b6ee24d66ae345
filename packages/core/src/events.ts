import { MappaWebhookError } from "./errors.js";
import type { RawBody } from "./hmac/types.js";
import { toSignable } from "./verify.js";

/** An error Mappa reports for a failed job. */
export interface MappaJobError {
  code: string;
  message: string;
  [key: string]: unknown;
}

/** `data` of `report.completed`: the report is ready to fetch. */
export interface ReportCompletedData {
  jobId: string;
  reportId: string;
  /** `"completed"`; some API versions send `"succeeded"`. */
  status: "completed" | "succeeded" | (string & {});
  [key: string]: unknown;
}

/** `data` of `report.failed`. */
export interface ReportFailedData {
  jobId: string;
  status: "failed" | (string & {});
  error: MappaJobError;
  [key: string]: unknown;
}

/** `data` of `matching.completed`. */
export interface MatchingCompletedData {
  jobId: string;
  matchingId: string;
  status: "completed" | "succeeded" | (string & {});
  [key: string]: unknown;
}

/** `data` of `matching.failed`. */
export interface MatchingFailedData {
  jobId: string;
  status: "failed" | (string & {});
  error: MappaJobError;
  [key: string]: unknown;
}

/** The `data` of each event type this package knows. */
export interface MappaEventDataMap {
  "report.completed": ReportCompletedData;
  "report.failed": ReportFailedData;
  "matching.completed": MatchingCompletedData;
  "matching.failed": MatchingFailedData;
}

/** The event types this package knows and types. */
export type MappaEventType = keyof MappaEventDataMap;

/** The list of known event types, for runtime checks. */
export const MAPPA_EVENT_TYPES: readonly MappaEventType[] = [
  "report.completed",
  "report.failed",
  "matching.completed",
  "matching.failed",
];

interface EventFields {
  /** The event id; `undefined` for older API versions that send none. */
  id: string | undefined;
  /** When the event was created (ISO 8601), from `createdAt` or, in older payloads, `timestamp`. */
  createdAt: string | undefined;
  /** The parsed JSON object as sent, with every field kept. */
  raw: Readonly<Record<string, unknown>>;
}

/** A known event, with its `type` and typed `data`. `known` is `true`. */
export type MappaKnownEvent<T extends MappaEventType = MappaEventType> = {
  [K in T]: EventFields & {
    type: K;
    known: true;
    data: MappaEventDataMap[K];
    /**
     * The key every delivery of this event shares: its `id`, or `<type>:<data.jobId>` when
     * there is no id. Deduplicate on it.
     */
    idempotencyKey: string;
  };
}[T];

/**
 * An event of a type this package does not know yet. It is passed through, never rejected:
 * a new event type on Mappa's side must not break a receiver. `known` is `false`.
 */
export interface MappaUnknownEvent extends EventFields {
  type: string;
  known: false;
  data: unknown;
  /** `id`, or `<type>:<data.jobId>`; `undefined` when the event has neither (not deduplicated). */
  idempotencyKey: string | undefined;
}

/**
 * Any verified Mappa event. Check `event.known` (or use a handler map) to narrow by `type`.
 *
 * @example
 * ```ts
 * if (event.known && event.type === "report.completed") console.log(event.data.reportId);
 * ```
 */
export type MappaEvent = MappaKnownEvent | MappaUnknownEvent;

export type ReportCompletedEvent = MappaKnownEvent<"report.completed">;
export type ReportFailedEvent = MappaKnownEvent<"report.failed">;
export type MatchingCompletedEvent = MappaKnownEvent<"matching.completed">;
export type MatchingFailedEvent = MappaKnownEvent<"matching.failed">;

const decoder = new TextDecoder();

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function invalid(message: string): MappaWebhookError {
  return new MappaWebhookError(
    "invalid_event",
    `The body is JSON but not a Mappa event: ${message}.`,
  );
}

function requireString(data: Record<string, unknown>, field: string, type: string): void {
  if (typeof data[field] !== "string")
    throw invalid(`\`${type}\` needs a string \`data.${field}\``);
}

function checkData(type: string, data: unknown): void {
  if (!isRecord(data)) throw invalid(`\`${type}\` needs an object \`data\``);
  requireString(data, "jobId", type);
  switch (type) {
    case "report.completed":
      requireString(data, "reportId", type);
      break;
    case "matching.completed":
      requireString(data, "matchingId", type);
      break;
    default: {
      const error = data.error;
      if (!isRecord(error) || typeof error.code !== "string") {
        throw invalid(`\`${type}\` needs \`data.error\` with a string \`code\``);
      }
    }
  }
}

function isKnownType(type: string): type is MappaEventType {
  return (
    type === "report.completed" ||
    type === "report.failed" ||
    type === "matching.completed" ||
    type === "matching.failed"
  );
}

/**
 * Parses an already verified body into a typed event. Known types are checked for the fields
 * they promise (`invalid_event` otherwise); any other type comes back as a generic event.
 * Tolerates older payloads: `timestamp` in place of `createdAt`, and no `id`.
 *
 * Call it only on a body whose signature you verified, or use {@link constructEvent}.
 *
 * @example
 * ```ts
 * const event = parseEvent(rawBody);
 * if (event.known && event.type === "report.failed") console.error(event.data.error.code);
 * ```
 */
export function parseEvent(payload: RawBody): MappaEvent {
  const body = toSignable(payload);
  if (body === undefined) {
    throw new MappaWebhookError(
      "invalid_json",
      "parseEvent needs the raw body (a string or bytes), not a parsed object.",
    );
  }
  // TextDecoder drops a leading BOM, which JSON.parse would reject; a string keeps it.
  let text = typeof body === "string" ? body : decoder.decode(body);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new MappaWebhookError("invalid_json", "The body is not valid JSON.", { cause });
  }
  if (!isRecord(json)) throw invalid("it is not a JSON object");
  const { id, type, data } = json;
  if (typeof type !== "string" || type === "") throw invalid("`type` is not a non-empty string");
  if (id !== undefined && typeof id !== "string") throw invalid("`id` is present but not a string");
  const createdAt =
    typeof json.createdAt === "string"
      ? json.createdAt
      : typeof json.timestamp === "string"
        ? json.timestamp
        : undefined;

  const known = isKnownType(type);
  if (known) checkData(type, data);
  const jobId = isRecord(data) && typeof data.jobId === "string" ? data.jobId : undefined;
  const idempotencyKey =
    id !== undefined && id !== "" ? id : jobId !== undefined ? `${type}:${jobId}` : undefined;
  // A fresh literal (no merging of parsed objects) keeps a `__proto__` key in the JSON inert.
  return { id, type, known, createdAt, data, idempotencyKey, raw: json } as MappaEvent;
}
