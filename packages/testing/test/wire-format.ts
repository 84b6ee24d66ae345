// The rules of Mappa's wire format (what Mappa's own SDKs accept), written out here on purpose,
// independently of the core's parseEvent, so generated fixtures are checked against the format
// itself rather than against our own parser. Source: the facts gathered from the guide,
// @mappa-ai/mappa-node 1.2.4 and @mappa-ai/conduit 0.2.2.
//
// Also used by the CLI's tests (trigger's bodies over HTTP, the demo's events).

/** The three shapes Mappa has sent, newest first. */
export type WireShape = "current" | "guide" | "mappa-node-1.2";

export const WIRE_SHAPES: readonly WireShape[] = ["current", "guide", "mappa-node-1.2"];

/** Each shape's exact top-level field set. */
export const WIRE_FIELDS: Record<WireShape, readonly string[]> = {
  // conduit 0.2.x
  current: ["id", "type", "createdAt", "timestamp", "data"],
  // the published guide
  guide: ["id", "type", "createdAt", "data"],
  // mappa-node 1.2.x: no id, no createdAt
  "mappa-node-1.2": ["type", "timestamp", "data"],
};

/** `data.status` a `*.completed` event carries in each shape. */
export const WIRE_COMPLETED_STATUS: Record<WireShape, string> = {
  current: "succeeded",
  guide: "completed",
  "mappa-node-1.2": "succeeded",
};

/** The `data` fields each known type requires (all strings except `error`). */
export const WIRE_DATA_FIELDS: Record<string, readonly string[]> = {
  "report.completed": ["jobId", "reportId", "status"],
  "report.failed": ["jobId", "status", "error"],
  "matching.completed": ["jobId", "matchingId", "status"],
  "matching.failed": ["jobId", "status", "error"],
};

/**
 * ISO 8601 date-time as `Date.prototype.toISOString` and Mappa's senders write it: a full date,
 * `T`, a time with seconds, optional fraction, and `Z` or an offset.
 */
const ISO_8601 =
  /^(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/;

export function isIso8601(value: unknown): boolean {
  if (typeof value !== "string") return false;
  const match = ISO_8601.exec(value);
  if (match === null) return false;
  // Reject calendar dates that do not exist (2026-02-30): the day must survive a round trip.
  const [, year, month, day] = match;
  const date = new Date(Date.UTC(Number(year), Number(month) - 1, Number(day)));
  return date.getUTCDate() === Number(day) && !Number.isNaN(Date.parse(value));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function sameSet(actual: readonly string[], expected: readonly string[]): boolean {
  return actual.length === expected.length && expected.every((key) => actual.includes(key));
}

/**
 * Every way `event` breaks the wire format of `shape`; an empty list when it is a body Mappa
 * could have sent. Unknown types are checked for their envelope only (`data` is opaque to the
 * SDKs); mappa-node 1.2 types only `report.*`, yet Mappa sends `matching.*` in the same
 * envelope, so those are held to the same data rules with that shape's status.
 */
export function wireFormatProblems(event: unknown, shape: WireShape): string[] {
  const problems: string[] = [];
  if (!isObject(event)) return [`the body is not a JSON object`];
  const keys = Object.keys(event);
  const expected = WIRE_FIELDS[shape];
  if (!sameSet(keys, expected)) {
    problems.push(`top-level fields are {${keys.join(", ")}}, expected {${expected.join(", ")}}`);
  }
  if (expected.includes("id") && (typeof event.id !== "string" || event.id === "")) {
    problems.push("`id` is not a non-empty string");
  }
  if (typeof event.type !== "string" || event.type === "") {
    problems.push("`type` is not a non-empty string");
  }
  for (const field of ["createdAt", "timestamp"]) {
    if (expected.includes(field) && !isIso8601(event[field])) {
      problems.push(`\`${field}\` is not an ISO 8601 string: ${JSON.stringify(event[field])}`);
    }
  }
  const type = String(event.type);
  const required = WIRE_DATA_FIELDS[type];
  if (required === undefined) return problems;

  const data = event.data;
  if (!isObject(data)) return [...problems, "`data` is not an object"];
  for (const field of required) {
    if (field === "error") continue;
    if (typeof data[field] !== "string")
      problems.push(`\`data.${field}\` is not a string: ${JSON.stringify(data[field])}`);
  }
  const status = type.endsWith(".completed") ? WIRE_COMPLETED_STATUS[shape] : "failed";
  if (data.status !== status) {
    problems.push(
      `\`data.status\` is ${JSON.stringify(data.status)}, the ${shape} shape sends "${status}"`,
    );
  }
  if (required.includes("error")) {
    const error = data.error;
    if (!isObject(error)) problems.push("`data.error` is not an object");
    else {
      if (typeof error.code !== "string") problems.push("`data.error.code` is not a string");
      if (typeof error.message !== "string") problems.push("`data.error.message` is not a string");
    }
  }
  return problems;
}

/** The shape whose exact top-level field set `event` has, if any. */
export function wireShapeOf(event: unknown): WireShape | undefined {
  if (!isObject(event)) return undefined;
  const keys = Object.keys(event);
  return WIRE_SHAPES.find((shape) => sameSet(keys, WIRE_FIELDS[shape]));
}

/**
 * Checks an exact body as sent: compact JSON (no whitespace a JSON encoder would not write) of
 * an event that follows `shape`. Returns the parsed event and the problems found.
 */
export function wireBodyProblems(
  body: string,
  shape: WireShape,
): { event: unknown; problems: string[] } {
  let event: unknown;
  try {
    event = JSON.parse(body);
  } catch {
    return { event: undefined, problems: ["the body is not JSON"] };
  }
  const problems = wireFormatProblems(event, shape);
  if (JSON.stringify(event) !== body) problems.push("the body is not compact JSON");
  return { event, problems };
}
