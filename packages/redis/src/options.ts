import { MappaWebhookError } from "@mappa-webhooks/core";

/**
 * The longest delay `setTimeout` honours (2^31−1 ms, about 24.8 days). A longer one fires
 * after 1 ms instead, so a larger time option would fail at run time: it is refused up front.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

function shown(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

/**
 * A time option in milliseconds, or `fallback` when it is not given: a finite number from
 * `min` to 2^31−1, else `invalid_options` naming the option, the value and the range.
 */
export function checkMs(
  where: string,
  name: string,
  value: unknown,
  fallback: number,
  min = 1,
): number {
  if (value === undefined) return fallback;
  if (
    typeof value === "number" &&
    Number.isFinite(value) &&
    value >= min &&
    value <= MAX_TIMER_MS
  ) {
    return value;
  }
  throw new MappaWebhookError(
    "invalid_options",
    `${where}: \`${name}\` must be a number of milliseconds from ${min} to ${MAX_TIMER_MS} (2^31−1, the longest timer JavaScript runs), got ${shown(value)}.`,
  );
}

/** A count option (`attempts`, `concurrency`, ...): a whole number of at least `min`. */
export function checkCount(
  where: string,
  name: string,
  value: unknown,
  fallback: number,
  min = 1,
): number {
  if (value === undefined) return fallback;
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= min) return value;
  throw new MappaWebhookError(
    "invalid_options",
    `${where}: \`${name}\` must be a whole number from ${min} to ${Number.MAX_SAFE_INTEGER}, got ${shown(value)}.`,
  );
}
