import { signPayload } from "@mappa-webhooks/core";

/**
 * What can be delivered: an event object (sent as compact JSON) or the exact body text.
 *
 * @example
 * ```ts
 * const payloads: DeliveryPayload[] = [createTestEvent("report.completed"), '{"type":"x"}'];
 * ```
 */
export type DeliveryPayload = string | object;

/**
 * Options of {@link createSignedDelivery} and {@link createSignedRequest}.
 *
 * @example
 * ```ts
 * const replay: SignOptions = { secret: "whsec_test", timestamp: new Date(Date.now() - 3_600_000) };
 * ```
 */
export interface SignOptions {
  /** The endpoint's signing secret. */
  secret: string;
  /** Unix seconds (or a Date) to sign with. Default: now. Use an old one to test replays. */
  timestamp?: number | Date;
  /** Header to put the signature in. Default `mappa-signature`. */
  headerName?: string;
}

/**
 * A signed body and its headers, ready for supertest, `fastify.inject` or `app.request`.
 *
 * @example
 * ```ts
 * const { body, headers }: SignedDelivery = await createSignedDelivery(event, { secret });
 * await app.request("/webhooks/mappa", { method: "POST", body, headers }); // Hono
 * ```
 */
export interface SignedDelivery {
  /** The exact body that was signed: send it unchanged. */
  body: string;
  /** `content-type` and the signature header. */
  headers: Record<string, string>;
}

/** The body Mappa would send for `payload`: strings are kept byte for byte, objects are compact JSON. */
export function toBody(payload: DeliveryPayload): string {
  if (typeof payload === "string") return payload;
  if (payload === null || typeof payload !== "object") {
    throw new TypeError(
      "@mappa-webhooks/testing: the event must be an object or the exact body string.",
    );
  }
  return JSON.stringify(payload);
}

/**
 * Signs an event the way Mappa does and returns the body with its headers.
 *
 * @example
 * ```ts
 * import { createSignedDelivery, createTestEvent } from "@mappa-webhooks/testing";
 *
 * const { body, headers } = await createSignedDelivery(createTestEvent("report.completed"), {
 *   secret: "whsec_test",
 * });
 * await request(app).post("/webhooks/mappa").set(headers).send(body).expect(200); // supertest
 * await fastify.inject({ method: "POST", url: "/webhooks/mappa", headers, payload: body });
 * ```
 */
export async function createSignedDelivery(
  event: DeliveryPayload,
  options: SignOptions,
): Promise<SignedDelivery> {
  const body = toBody(event);
  const signature = await signPayload({
    payload: body,
    secret: options.secret,
    ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
  });
  return {
    body,
    headers: {
      "content-type": "application/json",
      [(options.headerName ?? "mappa-signature").toLowerCase()]: signature,
    },
  };
}

/**
 * Builds a signed Fetch `Request` (POST) for `url`, as Mappa would send it. Pass it to a Fetch
 * handler (`app.fetch(request)`, `webhooks.handleRequest(request)`) or to `fetch`.
 *
 * @example
 * ```ts
 * import { createSignedRequest, createTestEvent } from "@mappa-webhooks/testing";
 *
 * const request = await createSignedRequest("http://localhost/webhooks/mappa",
 *   createTestEvent("report.completed"), { secret: "whsec_test" });
 * const response = await app.fetch(request);
 * ```
 */
export async function createSignedRequest(
  url: string | URL,
  event: DeliveryPayload,
  options: SignOptions,
): Promise<Request> {
  const { body, headers } = await createSignedDelivery(event, options);
  return new Request(url, { method: "POST", body, headers });
}
