import { MappaWebhookError } from "./errors.js";
import type { RawBody } from "./hmac/types.js";
import { toSignable } from "./verify.js";

/** An error Mappa reports for a failed job. */
export interface MappaJobError {
  /** Machine-readable reason, e.g. `"target_not_found"`. */
  code: string;
  /** What went wrong, for people. */
  message: string;
}

/**
 * `data.status` of a `*.completed` event: `"succeeded"` on the current wire format (Mappa's
 * SDKs since mappa-node 1.2 and conduit 0.2), `"completed"` in the guide's older shape.
 */
export type MappaCompletedStatus = "succeeded" | "completed";

/** `data.status` of a `*.failed` event. */
export type MappaFailedStatus = "failed";

/** `data` of `report.completed`: the report is ready to fetch. */
export interface ReportCompletedData {
  jobId: string;
  reportId: string;
  status: MappaCompletedStatus;
}

/** `data` of `report.failed`. */
export interface ReportFailedData {
  jobId: string;
  status: MappaFailedStatus;
  error: MappaJobError;
}

/** `data` of `matching.completed`. */
export interface MatchingCompletedData {
  jobId: string;
  matchingId: string;
  status: MappaCompletedStatus;
}

/** `data` of `matching.failed`. */
export interface MatchingFailedData {
  jobId: string;
  status: MappaFailedStatus;
  error: MappaJobError;
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

/**
 * The top-level fields every event has, each exactly as Mappa sent it. Mappa has used three
 * shapes: the guide's `{id, type, createdAt, data}`, mappa-node 1.2's `{type, timestamp, data}`
 * and the current `{id, type, createdAt, timestamp, data}`; a field a shape lacks is `undefined`.
 */
interface EventFields {
  /** The event id; `undefined` in the mappa-node 1.2 shape, which sends none. */
  id: string | undefined;
  /** `createdAt` as sent (ISO 8601), when the shape has it. */
  createdAt: string | undefined;
  /** `timestamp` as sent (ISO 8601), when the shape has it. */
  timestamp: string | undefined;
  /**
   * When the event happened, whatever the shape: `createdAt`, else `timestamp` (ISO 8601 as
   * sent). `undefined` only when Mappa sent neither. Use this rather than either field.
   *
   * @example
   * ```ts
   * const when = event.occurredAt ? new Date(event.occurredAt) : new Date();
   * ```
   */
  occurredAt: string | undefined;
  /** The parsed JSON object as sent, with every field kept (also ones not typed here). */
  raw: Readonly<Record<string, unknown>>;
  /**
   * `true` when the event was not delivered by Mappa but built by `createMappaRecovery` from
   * the job as `GET /v1/jobs/:id` returned it (its webhook never arrived in time).
   */
  recovered: boolean;
}

/** A known event, with its `type` and typed `data`. `known` is `true`. */
export type MappaKnownEvent<T extends MappaEventType = MappaEventType> = {
  [K in T]: EventFields & {
    type: K;
    known: true;
    data: MappaEventDataMap[K];
    /**
     * The key every delivery of this job outcome shares: `~job:<type>:<jobId>`, built from
     * `type` and `data.jobId` (never from `id`), so a webhook and the event recovery builds
     * for the same job are one event. No event id can equal it. Deduplicate on it.
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
  /**
   * The `id` as sent, else `~job:<type>:<jobId>`; `undefined` when the event has neither an
   * id nor a `data.jobId`.
   */
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

/**
 * Idempotency keys of job outcomes start with this; an event id that starts with `~` is
 * escaped by doubling it, so an id can never equal a job-outcome key.
 */
const FALLBACK_KEY_PREFIX = "~job:";

/**
 * The idempotency key for an event. A known event (`report.completed`, `report.failed`,
 * `matching.completed`, `matching.failed`) is one job's outcome, so it is keyed by the outcome:
 * `~job:<type>:<jobId>`, whatever its id. Every delivery of that outcome shares the key: a
 * retry, a resend under a new id, an id-less delivery and the event recovery builds from the
 * API (see `createMappaRecovery`). Any other event is keyed by its `id` as sent (an id
 * starting with `~` gets one more `~`), else by `~job:<type>:<jobId>`, else `undefined`.
 *
 * @example
 * ```ts
 * idempotencyKeyFor({ id: "evt_1", type: "report.completed", jobId: "j1" }); // "~job:report.completed:j1"
 * idempotencyKeyFor({ type: "report.completed", jobId: "j1" }); // "~job:report.completed:j1"
 * idempotencyKeyFor({ id: "evt_2", type: "report.progress", jobId: "j1" }); // "evt_2"
 * ```
 */
export function idempotencyKeyFor(event: {
  id?: string | undefined;
  type: string;
  jobId?: string | undefined;
}): string | undefined {
  const { id, type, jobId } = event;
  if (jobId !== undefined && isKnownType(type)) return jobOutcomeKey(type, jobId);
  if (id !== undefined && id !== "") return id.charCodeAt(0) === 0x7e ? `~${id}` : id;
  return jobId !== undefined ? `${FALLBACK_KEY_PREFIX}${type}:${jobId}` : undefined;
}

/**
 * The key of one job's outcome: what the webhook of that outcome and its recovery both claim.
 *
 * @example
 * ```ts
 * jobOutcomeKey("report.completed", "job_1"); // "~job:report.completed:job_1"
 * ```
 */
export function jobOutcomeKey(type: MappaEventType, jobId: string): string {
  return `${FALLBACK_KEY_PREFIX}${type}:${jobId}`;
}

/** The top-level field marking an event built by recovery. */
export const RECOVERED_FIELD = "mappaRecovered";

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

function requireString(record: Record<string, unknown>, field: string, path: string, type: string) {
  if (typeof record[field] !== "string") {
    throw invalid(`\`${type}\` needs a string \`${path}\`, got ${describe(record[field])}`);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "none";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** Checks every field the type of a known event promises, naming the first one missing. */
function checkData(type: MappaEventType, data: unknown): void {
  if (!isRecord(data)) throw invalid(`\`${type}\` needs an object \`data\`, got ${describe(data)}`);
  requireString(data, "jobId", "data.jobId", type);
  if (type === "report.completed") requireString(data, "reportId", "data.reportId", type);
  else if (type === "matching.completed")
    requireString(data, "matchingId", "data.matchingId", type);
  requireString(data, "status", "data.status", type);
  if (type === "report.failed" || type === "matching.failed") {
    const error = data.error;
    if (!isRecord(error)) {
      throw invalid(`\`${type}\` needs an object \`data.error\`, got ${describe(error)}`);
    }
    requireString(error, "code", "data.error.code", type);
    requireString(error, "message", "data.error.message", type);
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

function optionalString(json: Record<string, unknown>, field: string): string | undefined {
  const value = json[field];
  if (value === undefined || typeof value === "string") return value;
  throw invalid(`\`${field}\` is present but not a string (got ${describe(value)})`);
}

/**
 * Parses an already verified body into a typed event. Known types are checked for every field
 * they promise (`invalid_event` naming the field otherwise); any other type comes back as a
 * generic event. Every shape Mappa has sent parses: with or without `id`, with `createdAt`,
 * `timestamp` or both (each kept as sent; `occurredAt` is whichever is there).
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
  if (!isRecord(json)) throw invalid(`it is ${describe(json)}, not a JSON object`);
  const { type, data } = json;
  if (typeof type !== "string" || type === "") throw invalid("`type` is not a non-empty string");
  const id = optionalString(json, "id");
  const createdAt = optionalString(json, "createdAt");
  const timestamp = optionalString(json, "timestamp");

  const known = isKnownType(type);
  if (known) checkData(type, data);
  const jobId = isRecord(data) && typeof data.jobId === "string" ? data.jobId : undefined;
  const idempotencyKey = idempotencyKeyFor({ id, type, jobId });
  const occurredAt = createdAt ?? timestamp;
  // A fresh literal (no merging of parsed objects) keeps a `__proto__` key in the JSON inert.
  return {
    id,
    type,
    known,
    createdAt,
    timestamp,
    occurredAt,
    data,
    idempotencyKey,
    raw: json,
    recovered: json[RECOVERED_FIELD] === true,
  } as MappaEvent;
}
