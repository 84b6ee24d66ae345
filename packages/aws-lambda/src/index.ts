import { STATUS_CODES } from "node:http";
import {
  createMappaWebhooks,
  createRecoveryEndpoint,
  type MappaRecovery,
  type MappaRecoveryReport,
  MappaWebhookError,
  type MappaWebhooksOptions,
  payloadTooLarge,
  type RecoveryEndpointOptions,
  recoveryReportJson,
  type WebhookResponse,
} from "@mappa-webhooks/core";
import type {
  ALBEvent,
  ALBResult,
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2,
  APIGatewayProxyResult,
  APIGatewayProxyStructuredResultV2,
  Context,
  LambdaFunctionURLEvent,
} from "aws-lambda";

// The event types and the error class, so apps need no direct dependency on the core.
export {
  isMappaWebhookError,
  type MappaEvent,
  type MappaEventType,
  type MappaHandlerMap,
  type MappaKnownEvent,
  type MappaUnknownEvent,
  MappaWebhookError,
  type MappaWebhooksOptions,
} from "@mappa-webhooks/core";

/**
 * The HTTP events the handler accepts: API Gateway REST APIs and HTTP APIs with payload format
 * 1.0 (`APIGatewayProxyEvent`), HTTP APIs with payload format 2.0 (`APIGatewayProxyEventV2`),
 * Lambda function URLs (`LambdaFunctionURLEvent`, the 2.0 format) and Application Load Balancer
 * targets (`ALBEvent`).
 *
 * @example
 * ```ts
 * const result = await handler(event as MappaLambdaEvent, context);
 * ```
 */
export type MappaLambdaEvent =
  | APIGatewayProxyEvent
  | APIGatewayProxyEventV2
  | LambdaFunctionURLEvent
  | ALBEvent;

/**
 * The result the handler returns, in the shape the event's source expects.
 *
 * @example
 * ```ts
 * const result: MappaLambdaResult = await handler(event, context);
 * console.log(result.statusCode);
 * ```
 */
export type MappaLambdaResult =
  | APIGatewayProxyResult
  | APIGatewayProxyStructuredResultV2
  | ALBResult;

/**
 * What handlers receive as their second argument: the Lambda event and context of the delivery.
 *
 * @example
 * ```ts
 * createMappaWebhookHandler({
 *   secret,
 *   on: { "report.completed": (event, { context }) => console.log(context.awsRequestId, event.id) },
 * });
 * ```
 */
export interface MappaLambdaContext {
  /** The invocation's event, as API Gateway, the function URL or the load balancer sent it. */
  event: MappaLambdaEvent;
  /** The invocation's Lambda context (`awsRequestId`, `getRemainingTimeInMillis()`, ...). */
  context: Context | undefined;
}

/**
 * Options of {@link createMappaWebhookHandler}: the core's options (`secret`, `on`, `onUnknown`,
 * `onError`, `idempotency`, `maxBodyBytes`, `toleranceSec`, ...). `ack: "first"` is refused:
 * Lambda freezes the function once the handler returned, so work after the answer would stall.
 *
 * @example
 * ```ts
 * const options: MappaLambdaOptions = {
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   on: { "report.failed": (event) => console.warn(event.data.error.code) },
 * };
 * export const handler = createMappaWebhookHandler(options);
 * ```
 */
export interface MappaLambdaOptions extends MappaWebhooksOptions<MappaLambdaContext> {
  ack?: "after-handlers";
}

/**
 * A Lambda handler for Mappa webhooks. Its result has the shape of its event's source: a
 * payload 2.0 result for HTTP APIs (2.0) and function URLs, an ALB result (with
 * `statusDescription`, and `multiValueHeaders` when the target group sends them) for load
 * balancers, a proxy result (`headers`, `isBase64Encoded: false`) for REST APIs and payload 1.0.
 *
 * @example
 * ```ts
 * import type { APIGatewayProxyHandlerV2 } from "aws-lambda";
 * export const handler: APIGatewayProxyHandlerV2 = createMappaWebhookHandler({ secret });
 * ```
 */
export interface MappaLambdaHandler {
  (event: ALBEvent, context?: Context): Promise<ALBResult>;
  (
    event: APIGatewayProxyEventV2 | LambdaFunctionURLEvent,
    context?: Context,
  ): Promise<APIGatewayProxyStructuredResultV2>;
  (event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult>;
  (event: MappaLambdaEvent, context?: Context): Promise<MappaLambdaResult>;
}

type Source = "v1" | "v2" | "alb";

function sourceOf(event: unknown): Source {
  if (event === null || typeof event !== "object") throw notAnHttpEvent(typeof event);
  const candidate = event as {
    version?: unknown;
    httpMethod?: unknown;
    requestContext?: { elb?: unknown; http?: { method?: unknown } };
  };
  if (candidate.requestContext?.elb !== undefined && typeof candidate.httpMethod === "string") {
    return "alb";
  }
  if (typeof candidate.requestContext?.http?.method === "string") return "v2";
  if (typeof candidate.httpMethod === "string") return "v1";
  throw notAnHttpEvent("an object without `httpMethod` or `requestContext.http.method`");
}

function notAnHttpEvent(what: string): MappaWebhookError {
  return new MappaWebhookError(
    "invalid_options",
    `The Lambda was invoked with ${what}, not an HTTP event. Invoke it through an API Gateway REST or HTTP API (Lambda proxy integration), a function URL or an Application Load Balancer target group.`,
  );
}

/**
 * Header names lower-cased, duplicates joined with ", " as Node's HTTP server does, so the core
 * sees the same headers as behind any Node framework. `multiValueHeaders` carries every value;
 * `headers` fills in the names it lacks.
 */
function headersOf(event: {
  headers?: Record<string, string | undefined> | null;
  multiValueHeaders?: Record<string, string[] | undefined> | null;
}): Record<string, string> {
  const out: Record<string, string> = {};
  const multi = event.multiValueHeaders;
  if (multi != null) {
    for (const name of Object.keys(multi)) {
      const values = multi[name];
      if (values === undefined || values.length === 0) continue;
      const key = name.toLowerCase();
      const joined = values.join(", ");
      out[key] = out[key] === undefined ? joined : `${out[key]}, ${joined}`;
    }
  }
  const single = event.headers;
  if (single != null) {
    for (const name of Object.keys(single)) {
      const value = single[name];
      const key = name.toLowerCase();
      if (value !== undefined && out[key] === undefined) out[key] = value;
    }
  }
  return out;
}

/** The exact body bytes: base64-decoded when the source encoded them, else the UTF-8 text. */
function bodyOf(body: string | null | undefined, isBase64Encoded: boolean, limit: number) {
  if (body == null || body === "") return new Uint8Array(0);
  if (isBase64Encoded) {
    // Four base64 characters carry three bytes: refuse before decoding what cannot fit.
    if (Math.floor((body.length * 3) / 4) - 2 > limit) throw payloadTooLarge(limit);
    return Buffer.from(body, "base64");
  }
  // A string is at least as many bytes as it has UTF-16 units: refuse before encoding.
  if (body.length > limit) throw payloadTooLarge(limit);
  return Buffer.from(body, "utf8");
}

function statusDescription(status: number): string {
  return `${status} ${STATUS_CODES[status] ?? "Unknown"}`;
}

function multiValued(headers: Record<string, string>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const name of Object.keys(headers)) out[name] = [headers[name] as string];
  return out;
}

function toResult(source: Source, event: MappaLambdaEvent, response: WebhookResponse) {
  if (source === "v2") {
    const result: APIGatewayProxyStructuredResultV2 = {
      statusCode: response.status,
      headers: response.headers,
      body: response.body,
    };
    return result;
  }
  if (source === "alb") {
    // A target group with multi-value headers on reads only `multiValueHeaders`; one without
    // reads only `headers`.
    const hasMultiValue = (event as ALBEvent).multiValueHeaders != null;
    const result: ALBResult = {
      statusCode: response.status,
      statusDescription: statusDescription(response.status),
      body: response.body,
      isBase64Encoded: false,
    };
    if (hasMultiValue) result.multiValueHeaders = multiValued(response.headers);
    else result.headers = response.headers;
    return result;
  }
  // Every answer header has one value, so `headers` alone says it all. API Gateway would also
  // merge a copy in `multiValueHeaders`, but emulators (serverless-offline) repeat such values.
  const result: APIGatewayProxyResult = {
    statusCode: response.status,
    headers: response.headers,
    body: response.body,
    isBase64Encoded: false,
  };
  return result;
}

/**
 * Creates a Lambda handler that receives Mappa webhooks behind API Gateway (REST APIs, HTTP
 * APIs with payload format 1.0 or 2.0), a Lambda function URL or an Application Load Balancer:
 * it takes the body's exact bytes (base64-decoded when `isBase64Encoded`), the headers from
 * `headers` and `multiValueHeaders` in any case, verifies the signature, deduplicates, runs
 * your handlers and returns the answer (200, 401, 400, 405, 409, 413, 500, 503) in the shape
 * the source expects.
 *
 * Handlers get `{ event, context }` as their second argument. The default in-memory
 * deduplication lives as long as one warm execution environment: pass a shared
 * `idempotency` store (e.g. `@mappa-webhooks/redis`) so concurrent environments agree.
 *
 * @example
 * ```ts
 * import { createMappaWebhookHandler } from "@mappa-webhooks/aws-lambda";
 *
 * export const handler = createMappaWebhookHandler({
 *   secret: process.env.MAPPA_WEBHOOK_SECRET!,
 *   on: { "report.completed": async (event) => saveReport(event.data.reportId) },
 * });
 * ```
 */
export function createMappaWebhookHandler(options: MappaLambdaOptions): MappaLambdaHandler {
  if (options !== null && typeof options === "object" && (options.ack as string) === "first") {
    throw new MappaWebhookError(
      "invalid_options",
      '`ack: "first"` cannot work on Lambda: the function is frozen once the handler returned, so handlers running after the answer would stall or be lost. Keep the default (`"after-handlers"`), or hand events to a queue (SQS) in your handler.',
    );
  }
  const webhooks = createMappaWebhooks<MappaLambdaContext>(options);

  const handler = async (
    event: MappaLambdaEvent,
    context?: Context,
  ): Promise<MappaLambdaResult> => {
    const source = sourceOf(event);
    const method =
      source === "v2"
        ? (event as APIGatewayProxyEventV2).requestContext.http.method
        : (event as APIGatewayProxyEvent | ALBEvent).httpMethod;
    const headers = headersOf(
      event as Parameters<typeof headersOf>[0] & { headers?: Record<string, string | undefined> },
    );
    if (method.toUpperCase() !== "POST") {
      return toResult(source, event, await webhooks.handle({ method, headers, rawBody: "" }));
    }
    let rawBody: Uint8Array;
    try {
      rawBody = bodyOf(event.body, event.isBase64Encoded === true, webhooks.maxBodyBytes);
    } catch (error) {
      return toResult(source, event, webhooks.errorResponse(error));
    }
    const response = await webhooks.handle({
      method,
      headers,
      rawBody,
      context: { event, context },
    });
    return toResult(source, event, response);
  };
  return handler as MappaLambdaHandler;
}

/** An EventBridge (CloudWatch Events) scheduled invocation, as a schedule rule sends it. */
export interface MappaScheduledEvent {
  source: "aws.events" | "aws.scheduler" | string;
  "detail-type"?: string;
  [field: string]: unknown;
}

/**
 * A Lambda that runs recovery: on a schedule (an EventBridge rule or EventBridge Scheduler,
 * which invokes it under IAM, so no token) it returns the report; behind a function URL, API
 * Gateway or an ALB it needs `Authorization: Bearer <token>` and answers like a cron route.
 */
export interface MappaRecoveryLambdaHandler {
  (event: MappaScheduledEvent, context?: Context): Promise<Record<string, unknown>>;
  (event: MappaLambdaEvent, context?: Context): Promise<MappaLambdaResult>;
}

function isScheduled(event: unknown): event is MappaScheduledEvent {
  const source = (event as { source?: unknown } | null)?.source;
  return source === "aws.events" || source === "aws.scheduler";
}

/**
 * Creates a Lambda handler that runs `recovery.reconcile()` (see `createMappaRecovery` in
 * `@mappa-webhooks/core`): point an EventBridge schedule at it (every 5 to 15 minutes), or call
 * it over HTTP with the bearer token. A scheduled run that cannot reach Mappa's API throws, so
 * the invocation shows as failed; every other outcome is in the returned report.
 *
 * @example
 * ```ts
 * import { createRecoveryHandler } from "@mappa-webhooks/aws-lambda";
 *
 * export const handler = createRecoveryHandler(recovery, { token: process.env.CRON_SECRET! });
 * ```
 */
export function createRecoveryHandler(
  recovery: MappaRecovery,
  options: RecoveryEndpointOptions,
): MappaRecoveryLambdaHandler {
  const endpoint = createRecoveryEndpoint(recovery, options);
  const handler = async (event: unknown): Promise<unknown> => {
    if (isScheduled(event)) {
      const report: MappaRecoveryReport = await recovery.reconcile();
      if (report.apiError !== undefined) throw report.apiError;
      return recoveryReportJson(report);
    }
    const source = sourceOf(event);
    const http = event as MappaLambdaEvent;
    const method =
      source === "v2"
        ? (http as APIGatewayProxyEventV2).requestContext.http.method
        : (http as APIGatewayProxyEvent | ALBEvent).httpMethod;
    const headers = headersOf(
      http as Parameters<typeof headersOf>[0] & { headers?: Record<string, string | undefined> },
    );
    const answer = await endpoint({ method, headers });
    return toResult(source, http, {
      status: answer.status,
      headers: answer.headers,
      body: answer.body,
    });
  };
  return handler as MappaRecoveryLambdaHandler;
}
