import { isMappaWebhookError, MappaWebhookError } from "./errors.js";
import { type HeadersInput, readHeader } from "./headers.js";
import { hmacEngine } from "./hmac/engine.js";
import type { MappaRecovery, MappaRecoveryReport } from "./recovery.js";

/** What a recovery endpoint needs of a request: its method and headers (no body is read). */
export interface RecoveryEndpointRequest {
  method: string;
  headers: HeadersInput;
}

/** What a recovery endpoint answers; adapters copy it onto their framework's response. */
export interface RecoveryEndpointResponse {
  status: number;
  headers: Record<string, string>;
  /** JSON: the run's counts and per-job outcomes, or `{ "error": … }`. */
  body: string;
  /** The run's report, when one ran. */
  report?: MappaRecoveryReport;
}

/** Options of {@link createRecoveryEndpoint}. */
export interface RecoveryEndpointOptions {
  /**
   * The bearer token a caller must send as `Authorization: Bearer <token>` (Vercel Cron sends
   * `CRON_SECRET` this way). At least 16 characters.
   */
  token: string;
}

const MIN_TOKEN_LENGTH = 16;
const JSON_HEADERS = { "content-type": "application/json", "cache-control": "no-store" };

function answer(status: number, body: unknown, extra: Record<string, string> = {}) {
  return { status, headers: { ...JSON_HEADERS, ...extra }, body: JSON.stringify(body) };
}

/** Compares two strings in time that depends on neither: both are hashed to one length first. */
async function sameSecret(expected: string, received: string): Promise<boolean> {
  const [a, b] = await Promise.all([
    hmacEngine.digestHex("mappa-recovery-endpoint", "", expected),
    hmacEngine.digestHex("mappa-recovery-endpoint", "", received),
  ]);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0 && a.length === b.length;
}

/** The report as JSON a cron log can show: error objects become their code and message. */
export function recoveryReportJson(report: MappaRecoveryReport): Record<string, unknown> {
  return {
    checked: report.checked,
    counts: report.counts,
    ...(report.retryAfterMs === undefined ? {} : { retryAfterMs: report.retryAfterMs }),
    ...(report.apiError === undefined
      ? {}
      : { apiError: { code: report.apiError.code, message: report.apiError.message } }),
    jobs: report.jobs.map(({ error, ...job }) =>
      error === undefined ? job : { ...job, error: error.code },
    ),
  };
}

/**
 * One `reconcile()` per authorized request: the framework-free half of a cron route. A `GET`
 * or `POST` with `Authorization: Bearer <token>` runs recovery and answers 200 with the report
 * (503 with `Retry-After` when Mappa's API failed, so the cron run shows it); a wrong or missing
 * token gets 401 and runs nothing; other methods get 405. Adapters wrap it (`@mappa-webhooks/next`
 * `createRecoveryRoute`, `@mappa-webhooks/aws-lambda` `createRecoveryHandler`).
 *
 * @example
 * ```ts
 * const endpoint = createRecoveryEndpoint(recovery, { token: process.env.CRON_SECRET! });
 * const { status, headers, body } = await endpoint({ method: "GET", headers: request.headers });
 * ```
 */
export function createRecoveryEndpoint(
  recovery: MappaRecovery,
  options: RecoveryEndpointOptions,
): (request: RecoveryEndpointRequest) => Promise<RecoveryEndpointResponse> {
  if (typeof (recovery as Partial<MappaRecovery> | undefined)?.reconcile !== "function") {
    throw new MappaWebhookError(
      "invalid_options",
      "createRecoveryEndpoint: pass the recovery createMappaRecovery(...) returned as its first argument.",
    );
  }
  const token = (options as Partial<RecoveryEndpointOptions> | undefined)?.token;
  if (typeof token !== "string" || token.length < MIN_TOKEN_LENGTH) {
    throw new MappaWebhookError(
      "invalid_options",
      `createRecoveryEndpoint: pass \`token\`, a secret of at least ${MIN_TOKEN_LENGTH} characters the cron sends as \`Authorization: Bearer <token>\` (e.g. process.env.CRON_SECRET).`,
    );
  }
  return async (request) => {
    const method = request.method.toUpperCase();
    if (method !== "GET" && method !== "POST") {
      return answer(405, { error: "method_not_allowed" }, { allow: "GET, POST" });
    }
    const authorization = readHeader(request.headers, "authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    if (match === null || !(await sameSecret(token, match[1] as string))) {
      return answer(401, { error: "unauthorized" }, { "www-authenticate": "Bearer" });
    }
    let report: MappaRecoveryReport;
    try {
      report = await recovery.reconcile();
    } catch (cause) {
      const error = isMappaWebhookError(cause)
        ? cause
        : new MappaWebhookError("idempotency_store_failed", "recovery could not run.", { cause });
      // The store's own message may name hosts; the cron log gets the code only.
      return answer(error.status >= 500 ? error.status : 503, { error: error.code });
    }
    const json = recoveryReportJson(report);
    if (report.apiError !== undefined) {
      const extra: Record<string, string> =
        report.retryAfterMs === undefined
          ? {}
          : { "retry-after": String(Math.ceil(report.retryAfterMs / 1000)) };
      return { ...answer(503, json, extra), report };
    }
    return { ...answer(200, json), report };
  };
}
