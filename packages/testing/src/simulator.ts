import { signPayload } from "@mappa-webhooks/core";
import { type DeliveryPayload, toBody } from "./sign.js";

/**
 * Mappa's retry schedule: the wait before each attempt, in milliseconds, each measured from the
 * end of the previous attempt. Immediately, then 5 s, 30 s, 5 min and 30 min later; after the
 * fifth failed attempt the event is abandoned (about 36 minutes after the first).
 *
 * @example
 * ```ts
 * // the first three attempts only
 * await simulateDelivery(url, event, { secret, schedule: MAPPA_RETRY_SCHEDULE_MS.slice(0, 3) });
 * ```
 */
export const MAPPA_RETRY_SCHEDULE_MS: readonly number[] = Object.freeze([
  0, 5_000, 30_000, 300_000, 1_800_000,
]);

/**
 * How long one attempt may take before it counts as failed, unless `timeoutMs` says otherwise.
 *
 * @example
 * ```ts
 * await simulateDelivery(url, event, { secret, timeoutMs: DEFAULT_ATTEMPT_TIMEOUT_MS / 10 });
 * ```
 */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 30_000;

/** The most response-body characters kept in a report. */
const MAX_RESPONSE_CHARS = 2_000;

/**
 * One attempt of a delivery.
 *
 * @example
 * ```ts
 * const failed = report.attempts.filter((a: DeliveryAttempt) => !a.ok).map((a) => a.status ?? a.errorCode);
 * ```
 */
export interface DeliveryAttempt {
  /** 1 for the first attempt. */
  attempt: number;
  /**
   * When Mappa would send this attempt, in ms after the first one, on the real (unscaled)
   * schedule: the sum of the waits before it (0, 5 000, 35 000, 335 000, 2 135 000).
   */
  scheduledAtMs: number;
  /** When it was actually sent, in ms after the simulation started (waits are time-scaled). */
  sentAtMs: number;
  /** The `t` of this attempt's signature: real unix seconds at send time. */
  signatureTimestamp: number;
  /** The HTTP status, when the receiver answered. */
  status?: number;
  /** True for a 2xx answer. */
  ok: boolean;
  /** Time from sending to the end of the response body, in ms. */
  latencyMs: number;
  /** The answer's body (first 2 000 characters), when there was one. */
  responseBody?: string;
  /** Why there was no answer: a network error or the timeout. */
  error?: string;
  /** A short code for `error`: `ECONNREFUSED`, `ENOTFOUND`, `TIMEOUT`, ... */
  errorCode?: string;
}

/**
 * The outcome of {@link simulateDelivery}.
 *
 * @example
 * ```ts
 * const report: DeliveryReport = await simulateDelivery(url, event, { secret, timeScale: 0.001 });
 * if (report.abandoned) console.log(report.attempts.at(-1)?.status);
 * ```
 */
export interface DeliveryReport {
  /** A 2xx answer was received. */
  delivered: boolean;
  /** Every scheduled attempt failed; Mappa would give up on this event. */
  abandoned: boolean;
  /** Every attempt, in order. */
  attempts: DeliveryAttempt[];
  /** The exact body sent on every attempt. */
  body: string;
  /** Real time the whole simulation took, in ms. */
  durationMs: number;
}

/**
 * Options of {@link simulateDelivery}.
 *
 * @example
 * ```ts
 * const options: SimulateDeliveryOptions = { secret: "whsec_test", timeScale: 0.001, timeoutMs: 2_000 };
 * ```
 */
export interface SimulateDeliveryOptions {
  /** The endpoint's signing secret. */
  secret: string;
  /**
   * The wait before each attempt in ms, each measured from the end of the previous attempt;
   * its length is the number of attempts. Default {@link MAPPA_RETRY_SCHEDULE_MS}. `[0]` sends once.
   */
  schedule?: readonly number[];
  /**
   * Multiplies every wait: `0.001` runs Mappa's 36-minute schedule in about 2 s. Signatures
   * always use the real clock, so they stay valid for the receiver. Default 1.
   */
  timeScale?: number;
  /** How long one attempt may take (not scaled). Default 30 000 ms. */
  timeoutMs?: number;
  /** The `fetch` to send with. Default: the global `fetch`. */
  fetch?: typeof fetch;
  /** Header to put the signature in. Default `mappa-signature`. */
  headerName?: string;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Called just before each attempt is sent. */
  onAttemptStart?: (info: { attempt: number; maxAttempts: number; scheduledAtMs: number }) => void;
  /** Called after each attempt with its result. */
  onAttempt?: (attempt: DeliveryAttempt) => void;
  /** Called after a failed attempt when another one will follow, before the wait. */
  onRetryScheduled?: (info: { attempt: number; delayMs: number; scaledDelayMs: number }) => void;
}

function invalid(message: string): TypeError {
  return new TypeError(`@mappa-webhooks/testing: ${message}`);
}

function checkOptions(options: SimulateDeliveryOptions): {
  schedule: readonly number[];
  timeScale: number;
  timeoutMs: number;
} {
  if (options === null || typeof options !== "object")
    throw invalid("options with `secret` are required.");
  if (typeof options.secret !== "string" || options.secret === "") {
    throw invalid("`secret` must be the endpoint's signing secret (a non-empty string).");
  }
  const schedule = options.schedule ?? MAPPA_RETRY_SCHEDULE_MS;
  if (
    !Array.isArray(schedule) ||
    schedule.length === 0 ||
    !schedule.every((ms) => typeof ms === "number" && Number.isFinite(ms) && ms >= 0)
  ) {
    throw invalid("`schedule` must be a non-empty list of waits in ms (numbers >= 0).");
  }
  const timeScale = options.timeScale ?? 1;
  if (!(typeof timeScale === "number" && Number.isFinite(timeScale) && timeScale >= 0)) {
    throw invalid("`timeScale` must be a number >= 0 (e.g. 0.001).");
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
  if (!(typeof timeoutMs === "number" && Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw invalid("`timeoutMs` must be a number of ms > 0.");
  }
  return { schedule, timeScale, timeoutMs };
}

const sleep = (ms: number): Promise<void> =>
  ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms));

/** A readable reason and a short code for a failed fetch (Node puts the socket error in `cause`). */
function describeFailure(error: unknown): { error: string; errorCode: string } {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : undefined;
  const source = cause ?? (error instanceof Error ? error : undefined);
  const code = (source as { code?: unknown } | undefined)?.code;
  const errorCode = typeof code === "string" ? code : (source?.name ?? "NETWORK_ERROR");
  const message = source?.message ?? String(error);
  return { error: message, errorCode };
}

async function attemptOnce(
  fetchImpl: typeof fetch,
  url: string,
  body: string,
  options: SimulateDeliveryOptions,
  timeoutMs: number,
): Promise<Omit<DeliveryAttempt, "attempt" | "scheduledAtMs" | "sentAtMs">> {
  // A fresh signature per attempt, on the real clock, as Mappa signs at send time.
  const signatureTimestamp = Math.floor(Date.now() / 1000);
  const signature = await signPayload({
    payload: body,
    secret: options.secret,
    timestamp: signatureTimestamp,
  });
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "user-agent": "mappa-webhooks-simulator",
    ...options.headers,
    [(options.headerName ?? "mappa-signature").toLowerCase()]: signature,
  };
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  const started = performance.now();
  try {
    const response = await fetchImpl(url, {
      method: "POST",
      body,
      headers,
      redirect: "manual",
      signal: controller.signal,
    });
    const text = await response.text();
    const latencyMs = Math.round(performance.now() - started);
    const result: Omit<DeliveryAttempt, "attempt" | "scheduledAtMs" | "sentAtMs"> = {
      signatureTimestamp,
      status: response.status,
      ok: response.status >= 200 && response.status < 300,
      latencyMs,
    };
    if (text !== "") result.responseBody = text.slice(0, MAX_RESPONSE_CHARS);
    return result;
  } catch (error) {
    const latencyMs = Math.round(performance.now() - started);
    const failure = timedOut
      ? { error: `no complete answer within ${timeoutMs} ms`, errorCode: "TIMEOUT" }
      : describeFailure(error);
    return { signatureTimestamp, ok: false, latencyMs, ...failure };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Delivers an event to `url` the way Mappa does: a POST of the same body on every attempt,
 * each with a fresh `mappa-signature` (timestamp at send time), retried on a non-2xx answer,
 * a network error or a timeout, following Mappa's schedule (immediately, then 5 s, 30 s,
 * 5 min and 30 min after the previous attempt) and abandoned after the fifth failure.
 * `timeScale` shrinks the waits so a test runs the whole schedule in milliseconds.
 *
 * Resolves with a report of every attempt; it never rejects for a failed delivery.
 *
 * @example
 * ```ts
 * import { createTestEvent, simulateDelivery } from "@mappa-webhooks/testing";
 *
 * const report = await simulateDelivery(`${baseUrl}/webhooks/mappa`, createTestEvent("report.completed"), {
 *   secret: "whsec_test",
 *   timeScale: 0.001, // 5 s → 5 ms, 30 min → 1.8 s
 * });
 * expect(report.delivered).toBe(true);
 * expect(report.attempts.map((a) => a.status)).toEqual([500, 200]);
 * ```
 */
export async function simulateDelivery(
  url: string | URL,
  event: DeliveryPayload,
  options: SimulateDeliveryOptions,
): Promise<DeliveryReport> {
  const { schedule, timeScale, timeoutMs } = checkOptions(options);
  const target = String(url);
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(target);
  } catch {
    throw invalid(`"${target}" is not an absolute URL.`);
  }
  if (parsedUrl.protocol !== "http:" && parsedUrl.protocol !== "https:") {
    throw invalid(`"${target}" is not an http(s) URL.`);
  }
  const fetchImpl = options.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== "function") {
    throw invalid("no global `fetch` in this runtime; pass `fetch`.");
  }
  const body = toBody(event);
  const attempts: DeliveryAttempt[] = [];
  const started = performance.now();
  let scheduledAtMs = 0;

  for (let index = 0; index < schedule.length; index++) {
    const delayMs = schedule[index] as number;
    if (index > 0) {
      const scaledDelayMs = delayMs * timeScale;
      options.onRetryScheduled?.({ attempt: index + 1, delayMs, scaledDelayMs });
      await sleep(scaledDelayMs);
    }
    scheduledAtMs += delayMs;
    options.onAttemptStart?.({ attempt: index + 1, maxAttempts: schedule.length, scheduledAtMs });
    const sentAtMs = Math.round(performance.now() - started);
    const outcome = await attemptOnce(fetchImpl, target, body, options, timeoutMs);
    const attempt: DeliveryAttempt = { attempt: index + 1, scheduledAtMs, sentAtMs, ...outcome };
    attempts.push(attempt);
    options.onAttempt?.(attempt);
    if (attempt.ok) {
      return {
        delivered: true,
        abandoned: false,
        attempts,
        body,
        durationMs: Math.round(performance.now() - started),
      };
    }
  }
  return {
    delivered: false,
    abandoned: true,
    attempts,
    body,
    durationMs: Math.round(performance.now() - started),
  };
}

/**
 * A simulator with shared defaults, from {@link createDeliverySimulator}.
 *
 * @example
 * ```ts
 * const mappa: DeliverySimulator = createDeliverySimulator({ secret: "whsec_test" });
 * ```
 */
export interface DeliverySimulator {
  /** {@link simulateDelivery} with the simulator's defaults; `options` override them. */
  deliver(
    url: string | URL,
    event: DeliveryPayload,
    options?: Partial<SimulateDeliveryOptions>,
  ): Promise<DeliveryReport>;
}

/**
 * A delivery simulator with defaults shared by many deliveries (secret, time scale, fetch).
 *
 * @example
 * ```ts
 * const mappa = createDeliverySimulator({ secret: "whsec_test", timeScale: 0.001 });
 * const report = await mappa.deliver(url, createTestEvent("matching.completed"));
 * const once = await mappa.deliver(url, createTestEvent("report.failed"), { schedule: [0] });
 * ```
 */
export function createDeliverySimulator(defaults: SimulateDeliveryOptions): DeliverySimulator {
  checkOptions(defaults);
  return {
    deliver: (url, event, options = {}) =>
      simulateDelivery(url, event, { ...defaults, ...options } as SimulateDeliveryOptions),
  };
}
