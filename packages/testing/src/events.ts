import type { MappaEventDataMap, MappaEventType } from "@mappa-webhooks/core";

/**
 * `data` of an event type the core does not know: a job id plus whatever the type carries.
 *
 * @example
 * ```ts
 * const data: UnknownEventData = createTestEvent("report.progress", { data: { progress: 0.5 } }).data;
 * ```
 */
export interface UnknownEventData {
  jobId: string;
  [key: string]: unknown;
}

/**
 * The `data` a test event of type `T` carries: typed for known types, generic otherwise.
 *
 * @example
 * ```ts
 * const data: TestEventData<"matching.completed"> = { jobId: "j1", matchingId: "m1", status: "completed" };
 * ```
 */
export type TestEventData<T extends string> = T extends MappaEventType
  ? MappaEventDataMap[T]
  : UnknownEventData;

/**
 * An event as Mappa sends it on the wire (the JSON body), narrowed by its `type`.
 * `JSON.stringify` it to get the body to sign.
 *
 * @example
 * ```ts
 * const event: TestEvent<"report.failed"> = createTestEvent("report.failed");
 * event.data.error.code; // string
 * ```
 */
export type TestEvent<T extends string = MappaEventType> = T extends unknown
  ? {
      /** The event id (`evt_…`); every delivery of one event shares it. */
      id: string;
      type: T;
      /** ISO 8601 creation time. */
      createdAt: string;
      data: TestEventData<T>;
    }
  : never;

/**
 * Every field optional, at every depth; `undefined` removes a field. Arrays are replaced whole.
 *
 * @example
 * ```ts
 * const patch: DeepPartial<TestEventData<"report.failed">> = { error: { code: "audio_too_short" } };
 * ```
 */
export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> | undefined }
    : T;

/**
 * What {@link createTestEvent} lets you change.
 *
 * @example
 * ```ts
 * const overrides: TestEventOverrides<"report.completed"> = { id: "evt_1", data: { reportId: "r1" } };
 * createTestEvent("report.completed", overrides);
 * ```
 */
export interface TestEventOverrides<T extends string = string> {
  /** The event id. Default: a fresh `evt_…` id. */
  id?: string;
  /** Creation time. Default: now. */
  createdAt?: string | Date;
  /**
   * Deep-merged into the default `data`: objects are merged key by key, other values (arrays
   * included) replace the default, and `undefined` removes the field (to build invalid events).
   * `__proto__`, `constructor` and `prototype` keys are ignored.
   */
  data?: DeepPartial<TestEventData<T>>;
}

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz";

function randomId(length: number): string {
  const bytes = new Uint8Array(length);
  globalThis.crypto.getRandomValues(bytes);
  let out = "";
  for (const byte of bytes) out += ALPHABET[byte % ALPHABET.length];
  return out;
}

/**
 * A fresh event id, shaped like Mappa's: `evt_` and 24 random characters.
 *
 * @example
 * ```ts
 * const id = createEventId(); // "evt_k3j9…"
 * ```
 */
export function createEventId(): string {
  return `evt_${randomId(24)}`;
}

// Mappa's job, report and matching ids are cuids (e.g. `cm5job123abc456`).
const cuid = (): string => `cm${randomId(23)}`;

function defaultData(type: string): Record<string, unknown> {
  switch (type) {
    case "report.completed":
      return { jobId: cuid(), reportId: cuid(), status: "completed" };
    case "report.failed":
      return {
        jobId: cuid(),
        status: "failed",
        error: {
          code: "target_not_found",
          message: "Could not identify the target speaker in the recording.",
        },
      };
    case "matching.completed":
      return { jobId: cuid(), matchingId: cuid(), status: "completed" };
    case "matching.failed":
      return {
        jobId: cuid(),
        status: "failed",
        error: {
          code: "insufficient_credits",
          message: "The account has no credits left for matching.",
        },
      };
    default:
      return { jobId: cuid() };
  }
}

const UNSAFE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A copy of JSON-like data into fresh objects, so the event never aliases the caller's values. */
function copy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(copy);
  if (isPlainObject(value)) return mergeInto({}, value);
  return value;
}

function mergeInto(
  target: Record<string, unknown>,
  patch: Record<string, unknown>,
): Record<string, unknown> {
  for (const key of Object.keys(patch)) {
    // A `__proto__` key from JSON.parse is an own property; assigning it would change the prototype.
    if (UNSAFE_KEYS.has(key)) continue;
    const value = patch[key];
    if (value === undefined) {
      delete target[key];
      continue;
    }
    const current = target[key];
    target[key] =
      isPlainObject(current) && isPlainObject(value)
        ? mergeInto(copy(current) as Record<string, unknown>, value)
        : copy(value);
  }
  return target;
}

/**
 * Deep-merges `patch` into a copy of `base`, with the rules of {@link TestEventOverrides.data}.
 *
 * @example
 * ```ts
 * mergeData({ error: { code: "a", message: "m" } }, { error: { code: "b" } });
 * // → { error: { code: "b", message: "m" } }
 * ```
 */
export function mergeData(
  base: Record<string, unknown>,
  patch: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const out = copy(base) as Record<string, unknown>;
  return patch === undefined ? out : mergeInto(out, patch);
}

/**
 * Builds a realistic event as Mappa sends it, for any test framework: a fresh `evt_…` id, an
 * ISO `createdAt`, and `data` with the fields its type promises (`jobId`, `reportId` or
 * `matchingId`, `status`, and an `error` for failed types). Any other type gets a generic
 * event with a `jobId`. The return type is narrowed by the literal `type`.
 *
 * @example
 * ```ts
 * import { createTestEvent } from "@mappa-webhooks/testing";
 *
 * const event = createTestEvent("report.failed", { data: { error: { code: "audio_too_short" } } });
 * event.data.error.code; // "audio_too_short" (message keeps its default)
 * const body = JSON.stringify(event);
 * ```
 */
export function createTestEvent<const T extends string>(
  type: T,
  overrides: TestEventOverrides<T> = {},
): TestEvent<T> {
  if (typeof type !== "string" || type === "") {
    throw new TypeError("@mappa-webhooks/testing: createTestEvent needs a non-empty event type.");
  }
  const patch = overrides.data as Record<string, unknown> | undefined;
  if (patch !== undefined && !isPlainObject(patch)) {
    throw new TypeError("@mappa-webhooks/testing: `overrides.data` must be a plain object.");
  }
  const createdAt = overrides.createdAt ?? new Date();
  return {
    id: overrides.id ?? createEventId(),
    type,
    createdAt: typeof createdAt === "string" ? createdAt : createdAt.toISOString(),
    data: mergeData(defaultData(type), patch),
  } as TestEvent<T>;
}
