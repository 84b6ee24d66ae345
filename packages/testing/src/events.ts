import type { MappaEventDataMap, MappaEventType } from "@mappa-webhooks/core";

/**
 * The wire shapes Mappa has sent, newest first:
 *
 * | shape              | top level                                    | `data.status` on `*.completed` |
 * | ------------------ | -------------------------------------------- | ------------------------------ |
 * | `"current"`        | `id`, `type`, `createdAt`, `timestamp`, `data` | `"succeeded"`                  |
 * | `"guide"`          | `id`, `type`, `createdAt`, `data`            | `"completed"`                  |
 * | `"mappa-node-1.2"` | `type`, `timestamp`, `data` (no `id`)        | `"succeeded"`                  |
 *
 * `"current"` is what Mappa sends today (the format `@mappa-ai/conduit` 0.2 reads); `"guide"` is
 * the one the published guide documents; `"mappa-node-1.2"` is what `@mappa-ai/mappa-node` 1.2
 * reads. `*.failed` events carry `status: "failed"` and an `error: { code, message }` in all three.
 *
 * @example
 * ```ts
 * const shape: TestEventShape = "guide";
 * createTestEvent("report.completed", {}, { shape }).data.status; // "completed"
 * ```
 */
export type TestEventShape = "current" | "guide" | "mappa-node-1.2";

/**
 * Every {@link TestEventShape}, newest first: loop over it to test a receiver against each.
 *
 * @example
 * ```ts
 * for (const shape of TEST_EVENT_SHAPES) {
 *   const event = createTestEvent("report.completed", {}, { shape });
 *   // ... deliver it and expect a 200
 * }
 * ```
 */
export const TEST_EVENT_SHAPES: readonly TestEventShape[] = Object.freeze([
  "current",
  "guide",
  "mappa-node-1.2",
] as const);

/**
 * `data.status` of a `*.completed` event in shape `S`: `"completed"` in the guide's shape,
 * `"succeeded"` otherwise.
 *
 * @example
 * ```ts
 * const status: TestCompletedStatus<"current"> = "succeeded";
 * ```
 */
export type TestCompletedStatus<S extends TestEventShape = "current"> = S extends "guide"
  ? "completed"
  : "succeeded";

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
 * The `data` a test event of type `T` in shape `S` carries: the core's type for known types,
 * with `status` narrowed to what that shape sends; generic for other types.
 *
 * @example
 * ```ts
 * const data: TestEventData<"matching.completed"> = { jobId: "j1", matchingId: "m1", status: "succeeded" };
 * const old: TestEventData<"matching.completed", "guide"> = { jobId: "j1", matchingId: "m1", status: "completed" };
 * ```
 */
export type TestEventData<
  T extends string,
  S extends TestEventShape = "current",
> = T extends MappaEventType
  ? {
      [K in keyof MappaEventDataMap[T]]: K extends "status"
        ? Extract<MappaEventDataMap[T][K], TestCompletedStatus<S> | "failed">
        : MappaEventDataMap[T][K];
    }
  : UnknownEventData;

/**
 * An event as Mappa sends it on the wire (the JSON body) in shape `S` (default `"current"`),
 * narrowed by its `type`; only the shape's top-level fields are there. `JSON.stringify` it to
 * get the body to sign.
 *
 * @example
 * ```ts
 * const event: TestEvent<"report.failed"> = createTestEvent("report.failed");
 * event.data.error.code; // string
 * const old: TestEvent<"report.completed", "mappa-node-1.2"> = createTestEvent(
 *   "report.completed", {}, { shape: "mappa-node-1.2" });
 * old.timestamp; // string; `old.id` is a type error: that shape has no id
 * ```
 */
export type TestEvent<
  T extends string = MappaEventType,
  S extends TestEventShape = "current",
> = T extends unknown
  ? S extends "guide"
    ? {
        /** The event id (`evt_…`); every delivery of one event shares it. */
        id: string;
        type: T;
        /** ISO 8601 creation time. */
        createdAt: string;
        data: TestEventData<T, S>;
      }
    : S extends "mappa-node-1.2"
      ? {
          type: T;
          /** ISO 8601 time of the event. */
          timestamp: string;
          data: TestEventData<T, S>;
        }
      : {
          /** The event id (`evt_…`); every delivery of one event shares it. */
          id: string;
          type: T;
          /** ISO 8601 creation time. */
          createdAt: string;
          /** ISO 8601 time of the event (the same instant as `createdAt` unless overridden). */
          timestamp: string;
          data: TestEventData<T, S>;
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
 * What {@link createTestEvent} lets you change. Only the fields of the chosen shape may be set:
 * the `mappa-node-1.2` shape has no `id` or `createdAt`, the `guide` shape no `timestamp`.
 *
 * @example
 * ```ts
 * const overrides: TestEventOverrides<"report.completed"> = { id: "evt_1", data: { reportId: "r1" } };
 * createTestEvent("report.completed", overrides);
 * ```
 */
export interface TestEventOverrides<
  T extends string = string,
  S extends TestEventShape = "current",
> {
  /** The event id. Default: a fresh `evt_…` id. Not in the `mappa-node-1.2` shape. */
  id?: S extends "mappa-node-1.2" ? never : string;
  /**
   * Creation time (a Date, or a string kept as given). Default: `timestamp` if given, else now.
   * Not in the `mappa-node-1.2` shape.
   */
  createdAt?: S extends "mappa-node-1.2" ? never : string | Date;
  /**
   * The event's `timestamp` (a Date, or a string kept as given). Default: `createdAt` if given,
   * else now. Not in the `guide` shape.
   */
  timestamp?: S extends "guide" ? never : string | Date;
  /**
   * Deep-merged into the default `data`: objects are merged key by key, other values (arrays
   * included) replace the default, and `undefined` removes the field (to build invalid events).
   * `__proto__`, `constructor` and `prototype` keys are ignored.
   */
  data?: DeepPartial<TestEventData<T, S>>;
}

/**
 * Options of {@link createTestEvent}.
 *
 * @example
 * ```ts
 * const options: TestEventOptions<"guide"> = { shape: "guide" };
 * createTestEvent("report.completed", {}, options);
 * ```
 */
export interface TestEventOptions<S extends TestEventShape = TestEventShape> {
  /**
   * The wire shape to build (see {@link TestEventShape}). Default `"current"`, what Mappa sends
   * today; pick an older one to test a receiver written against a pinned SDK.
   */
  shape?: S;
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

function defaultData(type: string, shape: TestEventShape): Record<string, unknown> {
  const completed: TestCompletedStatus<TestEventShape> =
    shape === "guide" ? "completed" : "succeeded";
  switch (type) {
    case "report.completed":
      return { jobId: cuid(), reportId: cuid(), status: completed };
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
      return { jobId: cuid(), matchingId: cuid(), status: completed };
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

function invalid(message: string): TypeError {
  return new TypeError(`@mappa-webhooks/testing: ${message}`);
}

/** The top-level fields of each shape, in the order Mappa writes them. */
const SHAPE_FIELDS: Record<TestEventShape, readonly string[]> = {
  current: ["id", "type", "createdAt", "timestamp", "data"],
  guide: ["id", "type", "createdAt", "data"],
  "mappa-node-1.2": ["type", "timestamp", "data"],
};

function readShape(options: TestEventOptions | undefined): TestEventShape {
  if (options !== undefined && (options === null || typeof options !== "object")) {
    throw invalid("the third argument of createTestEvent must be an options object ({ shape }).");
  }
  const shape = options?.shape ?? "current";
  if (!Object.hasOwn(SHAPE_FIELDS, shape)) {
    throw invalid(
      `unknown shape ${JSON.stringify(shape)}; use one of ${TEST_EVENT_SHAPES.map((s) => `"${s}"`).join(", ")}.`,
    );
  }
  return shape;
}

function isoTime(value: string | Date, field: string): string {
  if (typeof value === "string") return value;
  if (value instanceof Date && !Number.isNaN(value.getTime())) return value.toISOString();
  throw invalid(`\`overrides.${field}\` must be a valid Date or a string.`);
}

/**
 * Builds a realistic event as Mappa sends it, for any test framework. By default it is in the
 * shape Mappa sends today (`"current"`): a fresh `evt_…` id, the type, ISO `createdAt` and
 * `timestamp`, and `data` with the fields its type promises (`jobId`, `reportId` or
 * `matchingId`, `status: "succeeded"`, or `status: "failed"` and an `error` for failed types).
 * Any other type gets a generic event with a `jobId`. The return type is narrowed by the
 * literal `type` and the shape.
 *
 * Pass `{ shape: "guide" }` (`{id, type, createdAt, data}`, `status: "completed"`) or
 * `{ shape: "mappa-node-1.2" }` (`{type, timestamp, data}`, no id) to test a receiver written
 * against an older API. Setting a field the shape does not have throws a `TypeError`.
 *
 * @example
 * ```ts
 * import { createTestEvent } from "@mappa-webhooks/testing";
 *
 * const event = createTestEvent("report.failed", { data: { error: { code: "audio_too_short" } } });
 * event.data.error.code; // "audio_too_short" (message keeps its default)
 * const body = JSON.stringify(event);
 *
 * const old = createTestEvent("report.completed", {}, { shape: "guide" });
 * old.data.status; // "completed"
 * ```
 */
export function createTestEvent<const T extends string, const S extends TestEventShape = "current">(
  type: T,
  overrides: TestEventOverrides<T, S> = {},
  options?: TestEventOptions<S>,
): TestEvent<T, S> {
  if (typeof type !== "string" || type === "") {
    throw invalid("createTestEvent needs a non-empty event type.");
  }
  const shape = readShape(options);
  if (overrides === null || typeof overrides !== "object") {
    throw invalid('`overrides` must be an object, e.g. { data: { jobId: "job_1" } }.');
  }
  const given = overrides as {
    id?: string;
    createdAt?: string | Date;
    timestamp?: string | Date;
    data?: unknown;
  };
  const fields = SHAPE_FIELDS[shape];
  for (const field of ["id", "createdAt", "timestamp"] as const) {
    if (given[field] !== undefined && !fields.includes(field)) {
      throw invalid(
        `the ${shape} shape has no \`${field}\` (it sends {${fields.join(", ")}}); drop the override or pick another shape.`,
      );
    }
  }
  const patch = given.data;
  if (patch !== undefined && !isPlainObject(patch)) {
    throw invalid("`overrides.data` must be a plain object.");
  }
  const now = new Date();
  const createdAt = isoTime(given.createdAt ?? given.timestamp ?? now, "createdAt");
  const timestamp = isoTime(given.timestamp ?? given.createdAt ?? now, "timestamp");
  const data = mergeData(defaultData(type, shape), patch);
  // Fresh literals in the order Mappa writes the fields, so the JSON reads like a real body.
  switch (shape) {
    case "guide":
      return { id: given.id ?? createEventId(), type, createdAt, data } as unknown as TestEvent<
        T,
        S
      >;
    case "mappa-node-1.2":
      return { type, timestamp, data } as unknown as TestEvent<T, S>;
    default:
      return {
        id: given.id ?? createEventId(),
        type,
        createdAt,
        timestamp,
        data,
      } as unknown as TestEvent<T, S>;
  }
}
