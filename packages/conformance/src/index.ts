import { readFileSync } from "node:fs";
import type { OutgoingHttpHeaders } from "node:http";
import {
  type MappaErrorInfo,
  type MappaEvent,
  type MappaUnknownEvent,
  MappaWebhookError,
  type MappaWebhooksOptions,
  parseEvent,
  signPayload,
} from "@mappa-webhooks/core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { describeEmulatorDeliveries } from "./emulator-case.js";
import {
  abortMidBody,
  type SentResponse,
  send,
  sendDeclaredOversized,
  stallMidBody,
  streamOversized,
} from "./http.js";
import { describeTelemetry } from "./telemetry-case.js";

export { describeExampleApp, type RunningExample, startExample } from "./example.js";
export {
  abortMidBody,
  type DeclaredOversizedResult,
  type PartialBodyOptions,
  type SendOptions,
  type SentResponse,
  type StalledResult,
  send,
  stallMidBody,
  streamOversized,
} from "./http.js";
export {
  describeIdempotencyStoreContract,
  type IdempotencyStoreContractCapabilities,
  type IdempotencyStoreFactory,
  type IdempotencyStoreUnderTest,
} from "./store-contract.js";

/** A running app, as the adapter's factory started it. */
export interface ConformanceApp {
  /** Full URL of the webhook route, e.g. http://127.0.0.1:PORT/webhooks/mappa */
  webhookUrl: string;
  /** Full URL of an ordinary JSON route beside it that answers 200 with `{ "echo": <parsed body> }`. */
  jsonUrl?: string;
  /**
   * Errors that reached the framework's own error path (Express's error middleware, Fastify's
   * `onError` hook, Hono's `app.onError`, a route handler that threw). The suite expects none:
   * the adapter answers every failure itself.
   */
  frameworkErrors?: () => readonly unknown[];
  close(): Promise<void>;
}

/**
 * Starts the framework app with the adapter configured from `options` on 127.0.0.1:0.
 * `unknown` context: the suite's handlers never read it, so any adapter's options accept them.
 */
export type ConformanceFactory = (
  options: MappaWebhooksOptions<unknown>,
) => Promise<ConformanceApp>;

/** What an adapter can opt out of, when its platform cannot do it. Everything defaults to true. */
export interface ConformanceCapabilities {
  /** The app has a JSON route beside the webhook (`jsonUrl`) whose parsing must keep working. */
  jsonRoute?: boolean;
  /** A chunked body over the limit is answered 413 while it streams, before the client finished. */
  streamingBodyLimit?: boolean;
  /** `ack: "first"` answers before handlers finish, and handlers keep running afterwards. */
  ackFirst?: boolean;
  /**
   * A client that stalls or leaves mid-body reaches the adapter (408 `body_timeout`, one
   * `request_aborted`). False where a front door reads the whole body first (AWS Lambda).
   */
  brokenClients?: boolean;
}

/** The secret every delivery of the suite is signed with. */
export const CONFORMANCE_SECRET = "whsec_conformance_5b1d0c7e9a";
/** The body limit of the suite's main app. */
export const CONFORMANCE_MAX_BODY_BYTES = 16 * 1024;

/** One case of the shared signature vectors (fixtures/signature.json, a copy of the shared vectors). */
export interface SignatureVectorCase {
  name: string;
  bodyBase64: string;
  headers: Record<string, string | string[]>;
  expect: string;
  secrets?: string[];
  toleranceSec?: number;
}

/** The shared signature vectors: a fixed clock, a secret, a tolerance and the cases. */
export interface SignatureVectors {
  now: number;
  secret: string;
  toleranceSec: number;
  cases: SignatureVectorCase[];
}

/** The shared signature vectors, read from this package's own copy (fixtures/signature.json). */
export const signatureVectors: SignatureVectors = JSON.parse(
  readFileSync(new URL("../fixtures/signature.json", import.meta.url), "utf8"),
) as SignatureVectors;
const vectors = signatureVectors;

/** One case of the shared event vectors (fixtures/events.json, a copy of the shared vectors). */
export interface EventVectorCase {
  name: string;
  /** The body exactly as sent (already verified when parsed). */
  body: string;
  /** `"ok"`, or the error code: `invalid_json` or `invalid_event`. */
  expect: "ok" | "invalid_json" | "invalid_event";
  /** For `ok`: the parsed event's type. */
  type?: string;
  /** For some `ok` cases: top-level properties the parsed event carries with exactly these values. */
  fields?: Record<string, unknown>;
}

/** The shared event vectors: bodies and what parsing them must give. */
export interface EventVectors {
  description: string;
  cases: EventVectorCase[];
}

/** The shared event vectors, read from this package's own copy (fixtures/events.json). */
export const eventVectors: EventVectors = JSON.parse(
  readFileSync(new URL("../fixtures/events.json", import.meta.url), "utf8"),
) as EventVectors;

/** What a handler should do for one event id. */
interface Plan {
  /** Throw on the first N runs. */
  failTimes?: number;
  /** Wait this long before finishing. */
  delayMs?: number;
  /** Wait for this before finishing. */
  gate?: Promise<void>;
  /** Throw exactly this value (on every run). */
  throws?: unknown;
}

/** Everything the suite's handlers saw. */
interface Recorder {
  runs: Array<{ handler: string; event: MappaEvent }>;
  /** Event ids whose handler finished without throwing. */
  effects: string[];
  unknown: MappaUnknownEvent[];
  errors: Array<{ error: MappaWebhookError; info: MappaErrorInfo }>;
  plans: Map<string, Plan>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 10 ms, at most `timeoutMs`. */
async function waitFor(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  for (let waited = 0; waited <= timeoutMs; waited += 10) {
    if (check()) return;
    await sleep(10);
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

function createRecorder(): Recorder {
  return { runs: [], effects: [], unknown: [], errors: [], plans: new Map() };
}

function recordingOptions(recorder: Recorder): MappaWebhooksOptions<unknown> {
  const run = async (handler: string, event: MappaEvent) => {
    recorder.runs.push({ handler, event });
    const plan = event.id === undefined ? undefined : recorder.plans.get(event.id);
    if (plan?.delayMs !== undefined) await sleep(plan.delayMs);
    if (plan?.gate !== undefined) await plan.gate;
    if (plan !== undefined && "throws" in plan) throw plan.throws;
    if (plan?.failTimes !== undefined && plan.failTimes > 0) {
      plan.failTimes -= 1;
      throw new Error(`planned failure for ${event.id}`);
    }
    recorder.effects.push(event.id ?? "");
  };
  return {
    secret: CONFORMANCE_SECRET,
    on: {
      "report.completed": (event) => run("report.completed", event),
      "report.failed": (event) => run("report.failed", event),
      "matching.completed": (event) => run("matching.completed", event),
      "matching.failed": (event) => run("matching.failed", event),
    },
    onUnknown: (event) => {
      recorder.unknown.push(event);
    },
    onError: (error, info) => {
      recorder.errors.push({ error, info });
    },
  };
}

let sequence = 0;
/** A fresh event id, so tests sharing an app never deduplicate each other. */
function freshId(label: string): string {
  sequence += 1;
  return `evt_${label}_${Date.now().toString(36)}_${sequence}`;
}

const SENT_AT = "2026-01-17T12:05:00.000Z";

/** A report.completed in Mappa's current wire shape (id, createdAt and timestamp). */
function reportCompleted(id: string): Record<string, unknown> {
  return {
    id,
    type: "report.completed",
    createdAt: SENT_AT,
    timestamp: SENT_AT,
    data: { jobId: `job_${id}`, reportId: `rep_${id}`, status: "succeeded", extra: { n: 1 } },
  };
}

const nowSec = () => Math.floor(Date.now() / 1000);

async function signedHeaders(
  body: string | Uint8Array,
  options: { secret?: string; timestamp?: number; contentType?: string | undefined } = {},
): Promise<OutgoingHttpHeaders> {
  const signature = await signPayload({
    payload: body,
    secret: options.secret ?? CONFORMANCE_SECRET,
    timestamp: options.timestamp ?? nowSec(),
  });
  const headers: OutgoingHttpHeaders = { "mappa-signature": signature };
  const contentType = "contentType" in options ? options.contentType : "application/json";
  if (contentType !== undefined) headers["content-type"] = contentType;
  return headers;
}

/** The v1 hex a correct signature for `body` would carry: it must never be echoed. */
async function expectedHex(body: string | Uint8Array, secret: string, t: number): Promise<string> {
  const header = await signPayload({ payload: body, secret, timestamp: t });
  return header.slice(header.indexOf("v1=") + 3);
}

function json(response: SentResponse): Record<string, unknown> {
  return JSON.parse(response.body) as Record<string, unknown>;
}

function useApp(
  factory: ConformanceFactory,
  options: () => MappaWebhooksOptions<unknown>,
): () => ConformanceApp {
  let app: ConformanceApp | undefined;
  beforeAll(async () => {
    app = await factory(options());
  });
  afterAll(async () => {
    await app?.close();
  });
  return () => {
    if (app === undefined) throw new Error("the conformance app did not start");
    return app;
  };
}

function describeSignatureVectors(factory: ConformanceFactory): void {
  describe("signature vectors over HTTP", () => {
    const configs = new Map<string, { secrets: string[]; toleranceSec: number }>();
    const keyOf = (c: SignatureVectorCase) => {
      const secrets = c.secrets ?? [vectors.secret];
      const toleranceSec = c.toleranceSec ?? vectors.toleranceSec;
      const key = `${secrets.join("|")}@${toleranceSec}`;
      configs.set(key, { secrets, toleranceSec });
      return key;
    };
    const keys = vectors.cases.map(keyOf);
    const apps = new Map<string, ConformanceApp>();
    beforeAll(async () => {
      for (const [key, config] of configs) {
        apps.set(
          key,
          await factory({
            secret: config.secrets,
            toleranceSec: config.toleranceSec,
            now: vectors.now,
            idempotency: false,
          }),
        );
      }
    });
    afterAll(async () => {
      for (const app of apps.values()) await app.close();
    });

    it.each(vectors.cases.map((c, i) => ({ ...c, key: keys[i] as string })))(
      "$name → $expect",
      async (c) => {
        const app = apps.get(c.key);
        if (app === undefined) throw new Error("vector app missing");
        const body = Buffer.from(c.bodyBase64, "base64");
        const response = await send(app.webhookUrl, {
          headers: { ...c.headers, "content-type": "application/json" },
          body,
        });
        if (c.expect === "ok") {
          let parses = true;
          try {
            parseEvent(body);
          } catch {
            parses = false;
          }
          // A good signature over a body that is not an event is a 400, never a 401.
          expect(response.status).toBe(parses ? 200 : 400);
          return;
        }
        expect(response.status).toBe(401);
        expect(json(response).error).toBe(c.expect);
        const header = String([c.headers["mappa-signature"]].flat()[0] ?? "");
        const t = /t=(\d+)/.exec(header)?.[1];
        const stamps = [vectors.now, ...(t === undefined ? [] : [Number(t)])];
        for (const secret of c.secrets ?? [vectors.secret]) {
          for (const stamp of stamps) {
            expect(response.body.toLowerCase()).not.toContain(
              await expectedHex(body, secret, stamp),
            );
          }
        }
      },
    );
  });
}

function describeDeliveries(
  factory: ConformanceFactory,
  capabilities: Required<ConformanceCapabilities>,
): void {
  describe("deliveries", () => {
    const recorder = createRecorder();
    const app = useApp(factory, () => ({
      ...recordingOptions(recorder),
      maxBodyBytes: CONFORMANCE_MAX_BODY_BYTES,
    }));
    const runsOf = (id: string) => recorder.runs.filter((r) => r.event.id === id);

    const contentTypes: Array<{ label: string; contentType: string | undefined }> = [
      { label: "application/json", contentType: "application/json" },
      { label: "application/json; charset=utf-8", contentType: "application/json; charset=utf-8" },
      { label: "text/plain", contentType: "text/plain" },
      { label: "text/plain; charset=ISO-8859-1", contentType: "text/plain; charset=ISO-8859-1" },
      { label: "application/octet-stream", contentType: "application/octet-stream" },
      { label: "no content type", contentType: undefined },
      // Media types a framework cannot parse must not keep a signed delivery out.
      { label: "an empty content type", contentType: "" },
      { label: "a content type without a slash", contentType: "garbage" },
      { label: "a content type of one semicolon", contentType: ";" },
      { label: "a content type with two slashes", contentType: "a/b/c" },
      { label: "a list of content types", contentType: "application/json, text/plain" },
    ];
    it.each(contentTypes)("accepts a valid delivery sent as $label", async ({ contentType }) => {
      const id = freshId("ct");
      const body = JSON.stringify(reportCompleted(id));
      const response = await send(app().webhookUrl, {
        headers: await signedHeaders(body, { contentType }),
        body,
      });
      expect(response.status).toBe(200);
      expect(json(response)).toEqual({ received: true });
      expect(runsOf(id)).toHaveLength(1);
    });

    it("accepts a valid delivery sent with chunked transfer encoding", async () => {
      const id = freshId("chunked");
      const body = JSON.stringify(reportCompleted(id));
      const third = Math.floor(body.length / 3);
      const response = await send(app().webhookUrl, {
        headers: await signedHeaders(body),
        chunks: [body.slice(0, third), body.slice(third, 2 * third), body.slice(2 * third)],
      });
      expect(response.status).toBe(200);
      expect(runsOf(id)).toHaveLength(1);
    });

    it("keeps multi-byte UTF-8 split across chunks byte-exact", async () => {
      const id = freshId("utf8");
      const event = reportCompleted(id);
      (event.data as Record<string, unknown>).note = "Zürich — 東京 — 🎉";
      const bytes = Buffer.from(JSON.stringify(event), "utf8");
      const split = bytes.indexOf(Buffer.from("東", "utf8")) + 1; // inside a character
      const response = await send(app().webhookUrl, {
        headers: await signedHeaders(bytes),
        chunks: [bytes.subarray(0, split), bytes.subarray(split)],
      });
      expect(response.status).toBe(200);
      expect(runsOf(id)[0]?.event.data).toMatchObject({ note: "Zürich — 東京 — 🎉" });
    });

    it("hands each typed event to its handler with its data intact", async () => {
      const id = freshId("typed");
      const events = [
        reportCompleted(`${id}_rc`),
        {
          id: `${id}_rf`,
          type: "report.failed",
          createdAt: SENT_AT,
          timestamp: SENT_AT,
          data: {
            jobId: "job_rf",
            status: "failed",
            error: { code: "target_not_found", message: "Could not identify target speaker" },
          },
        },
        {
          id: `${id}_mc`,
          type: "matching.completed",
          createdAt: SENT_AT,
          timestamp: SENT_AT,
          data: { jobId: "job_mc", matchingId: "mat_1", status: "succeeded" },
        },
        {
          id: `${id}_mf`,
          type: "matching.failed",
          createdAt: SENT_AT,
          timestamp: SENT_AT,
          data: { jobId: "job_mf", status: "failed", error: { code: "timeout", message: "x" } },
        },
      ];
      for (const event of events) {
        const body = JSON.stringify(event);
        const response = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
        expect(response.status).toBe(200);
        const runs = runsOf(event.id as string);
        expect(runs).toHaveLength(1);
        const [seen] = runs;
        expect(seen?.handler).toBe(event.type);
        expect(seen?.event).toMatchObject({
          id: event.id,
          type: event.type,
          known: true,
          createdAt: event.createdAt,
          timestamp: event.timestamp,
          // A job's outcome is one event, however many deliveries carry it.
          idempotencyKey: `~job:${event.type}:${(event.data as { jobId: string }).jobId}`,
          data: event.data,
        });
        expect(seen?.event.raw).toEqual(event);
      }
    });

    const rejected: Array<{
      label: string;
      code: string;
      make: (id: string) => Promise<{ headers: OutgoingHttpHeaders; body: string }>;
    }> = [
      {
        label: "a tampered body",
        code: "signature_mismatch",
        make: async (id) => {
          const body = JSON.stringify(reportCompleted(id));
          return { headers: await signedHeaders(body), body: body.replace("rep_", "rex_") };
        },
      },
      {
        label: "a re-serialised body",
        code: "signature_mismatch",
        make: async (id) => {
          const body = JSON.stringify(reportCompleted(id));
          return {
            headers: await signedHeaders(body),
            body: JSON.stringify(JSON.parse(body), null, 2),
          };
        },
      },
      {
        label: "a stale timestamp",
        code: "timestamp_outside_tolerance",
        make: async (id) => {
          const body = JSON.stringify(reportCompleted(id));
          return { headers: await signedHeaders(body, { timestamp: nowSec() - 3600 }), body };
        },
      },
      {
        label: "a future timestamp",
        code: "timestamp_outside_tolerance",
        make: async (id) => {
          const body = JSON.stringify(reportCompleted(id));
          return { headers: await signedHeaders(body, { timestamp: nowSec() + 3600 }), body };
        },
      },
      {
        label: "the wrong secret",
        code: "signature_mismatch",
        make: async (id) => {
          const body = JSON.stringify(reportCompleted(id));
          return { headers: await signedHeaders(body, { secret: "whsec_someone_else" }), body };
        },
      },
      {
        label: "no signature header",
        code: "missing_signature",
        make: async (id) => ({
          headers: { "content-type": "application/json" },
          body: JSON.stringify(reportCompleted(id)),
        }),
      },
      {
        label: "a garbage signature header",
        code: "malformed_signature",
        make: async (id) => ({
          headers: { "content-type": "application/json", "mappa-signature": "garbage;;=%%" },
          body: JSON.stringify(reportCompleted(id)),
        }),
      },
      {
        label: "a garbage v1 value",
        code: "signature_mismatch",
        make: async (id) => ({
          headers: {
            "content-type": "application/json",
            "mappa-signature": `t=${nowSec()},v1=${"zz".repeat(32)}`,
          },
          body: JSON.stringify(reportCompleted(id)),
        }),
      },
    ];
    it.each(rejected)("answers 401 $code to $label", async ({ make, code }) => {
      const id = freshId("bad");
      const { headers, body } = await make(id);
      const response = await send(app().webhookUrl, { headers, body });
      expect(response.status).toBe(401);
      expect(json(response)).toEqual({ error: code });
      // Never reveal what the right signature would have been.
      const t = /t=(\d+)/.exec(String(headers["mappa-signature"] ?? ""))?.[1];
      const stamp = t === undefined ? nowSec() : Number(t);
      const original = JSON.stringify(reportCompleted(id));
      for (const candidate of [body, original]) {
        expect(response.body).not.toContain(
          await expectedHex(candidate, CONFORMANCE_SECRET, stamp),
        );
      }
      expect(runsOf(id)).toHaveLength(0);
    });

    it.each([
      { label: "invalid JSON", body: '{"id":"evt_broken","type":', code: "invalid_json" },
      { label: "JSON that is not an event", body: '{"hello":"world"}', code: "invalid_event" },
      { label: "a JSON array", body: "[1,2,3]", code: "invalid_event" },
      {
        label: "a known type without its data",
        body: '{"id":"evt_nodata","type":"report.completed","data":{}}',
        code: "invalid_event",
      },
    ])("answers 400 $code to $label with a valid signature", async ({ body, code }) => {
      const response = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
      expect(response.status).toBe(400);
      expect(json(response).error).toBe(code);
    });

    it.each(["GET", "PUT", "DELETE"])("answers 405 with Allow: POST to %s", async (method) => {
      const response = await send(app().webhookUrl, { method });
      expect(response.status).toBe(405);
      expect(response.headers.allow).toBe("POST");
      expect(json(response).error).toBe("method_not_allowed");
    });

    it("answers 413 to a body over the limit with a declared length", async () => {
      const id = freshId("big");
      const event = reportCompleted(id);
      (event.data as Record<string, unknown>).padding = "x".repeat(CONFORMANCE_MAX_BODY_BYTES);
      const body = JSON.stringify(event);
      const response = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
      expect(response.status).toBe(413);
      expect(json(response).error).toBe("payload_too_large");
      expect(runsOf(id)).toHaveLength(0);
    });

    it("answers 413 to a declared length over the limit, readable by a client still sending (25 times)", async () => {
      // The server answers from the head; closing while the body still arrives would make the
      // kernel reset the connection, which can throw the answer away before the client reads
      // it. Repeated, as that race is lost only some of the time.
      const failures: string[] = [];
      for (let attempt = 0; attempt < 25; attempt++) {
        const result = await sendDeclaredOversized(
          app().webhookUrl,
          { "content-type": "application/json", "mappa-signature": `t=${nowSec()},v1=00` },
          2 * 1024 * 1024,
        );
        const answered = result.status === 413 && result.received.includes('"payload_too_large"');
        if (!answered || result.socketError !== undefined) {
          failures.push(
            `attempt ${attempt}: status ${result.status}, ${result.socketError ?? "no socket error"}`,
          );
        }
      }
      expect(failures).toEqual([]);
    });

    if (capabilities.streamingBodyLimit) {
      it("answers 413 while a chunked body over the limit is still streaming", async () => {
        const maxBytes = 32 * 1024 * 1024;
        const result = await streamOversized(
          app().webhookUrl,
          { "content-type": "application/json", "mappa-signature": `t=${nowSec()},v1=00` },
          maxBytes,
        );
        expect(result.status).toBe(413);
        expect(result.answeredEarly).toBe(true);
        expect(result.bytesWritten).toBeLessThan(maxBytes);
      });
    }

    it("answers 200 to an unknown event type and calls onUnknown", async () => {
      const id = freshId("unknown");
      const body = JSON.stringify({
        id,
        type: "report.archived",
        createdAt: SENT_AT,
        timestamp: SENT_AT,
        data: { jobId: "job_x", archivedBy: "someone" },
      });
      const response = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
      expect(response.status).toBe(200);
      const seen = recorder.unknown.filter((e) => e.id === id);
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ type: "report.archived", known: false });
      expect(runsOf(id)).toHaveLength(0);
    });

    it("answers 500 when a handler throws, then 200 on the retry (ran twice, effect once)", async () => {
      const id = freshId("retry");
      recorder.plans.set(id, { failTimes: 1 });
      const body = JSON.stringify(reportCompleted(id));
      const first = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
      expect(first.status).toBe(500);
      expect(json(first)).toEqual({ error: "handler_failed" });
      expect(
        recorder.errors.some((e) => e.info.phase === "handler" && e.info.event?.id === id),
      ).toBe(true);
      const retry = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
      expect(retry.status).toBe(200);
      expect(runsOf(id)).toHaveLength(2);
      expect(recorder.effects.filter((e) => e === id)).toHaveLength(1);
    });

    const thrown: Array<{ label: string; value: () => unknown; inner: string }> = [
      {
        label: "a MappaWebhookError (signature_mismatch, as a nested constructEvent throws)",
        value: () =>
          new MappaWebhookError("signature_mismatch", "inner detail the sender must not see", {
            hint: "inner hint the sender must not see",
          }),
        inner: "inner detail the sender must not see",
      },
      {
        label: 'an Error named "MappaWebhookError" with the code "toString"',
        value: () =>
          Object.assign(new Error("inner text of a look-alike error"), {
            name: "MappaWebhookError",
            code: "toString",
          }),
        inner: "inner text of a look-alike error",
      },
      {
        label: "an Error with a status of its own (418)",
        value: () =>
          Object.assign(new Error("inner text with a status"), { status: 418, statusCode: 418 }),
        inner: "inner text with a status",
      },
      { label: "a string", value: () => "inner thrown string", inner: "inner thrown string" },
      { label: "undefined", value: () => undefined, inner: "undefined" },
    ];
    it.each(thrown)(
      "answers 500 handler_failed, as JSON and without its text, when a handler throws $label",
      async ({ value, inner }) => {
        const id = freshId("throws");
        recorder.plans.set(id, { throws: value() });
        const body = JSON.stringify(reportCompleted(id));
        const response = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
        expect(response.status).toBe(500);
        expect(String(response.headers["content-type"])).toContain("application/json");
        expect(json(response)).toEqual({ error: "handler_failed" });
        expect(response.body).not.toContain(inner);
        expect(response.body).not.toMatch(/\bat .*:\d+:\d+/); // no stack frame
        const reported = recorder.errors.filter((e) => e.info.event?.id === id);
        expect(reported.map((e) => [e.error.code, e.info.phase, e.info.status])).toEqual([
          ["handler_failed", "handler", 500],
        ]);
        expect(runsOf(id)).toHaveLength(1);
      },
    );

    it("answers 200 to a duplicate after success without running the handler again", async () => {
      const id = freshId("dup");
      const body = JSON.stringify(reportCompleted(id));
      const first = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
      expect(first.status).toBe(200);
      const again = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
      expect(again.status).toBe(200);
      expect(json(again)).toEqual({ received: true, duplicate: true });
      expect(runsOf(id)).toHaveLength(1);
    });

    it("runs the handler once for 8 concurrent copies of one event, with no 5xx", async () => {
      const id = freshId("burst");
      recorder.plans.set(id, { delayMs: 150 });
      const body = JSON.stringify(reportCompleted(id));
      const headers = await signedHeaders(body);
      const responses = await Promise.all(
        Array.from({ length: 8 }, () => send(app().webhookUrl, { headers, body })),
      );
      const statuses = responses.map((r) => r.status);
      for (const status of statuses) expect([200, 409]).toContain(status);
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
      expect(runsOf(id)).toHaveLength(1);
      const late = await send(app().webhookUrl, { headers, body });
      expect(late.status).toBe(200);
      expect(runsOf(id)).toHaveLength(1);
    });

    if (capabilities.jsonRoute) {
      it("keeps parsing JSON on an ordinary route beside the webhook", async () => {
        const { jsonUrl } = app();
        expect(jsonUrl).toBeDefined();
        const payload = { hello: "world", list: [1, 2, 3], nested: { ok: true } };
        const response = await send(jsonUrl as string, {
          headers: { "content-type": "application/json" },
          body: JSON.stringify(payload),
        });
        expect(response.status).toBe(200);
        expect(json(response)).toEqual({ echo: payload });
      });
    }

    it("never hands a failure to the framework's own error handler", () => {
      expect(app().frameworkErrors?.() ?? []).toEqual([]);
    });
  });
}

/** The value of `name` on the event, as a plain record. */
function field(event: MappaEvent, name: string): unknown {
  return (event as unknown as Record<string, unknown>)[name];
}

function describeEventVectors(factory: ConformanceFactory): void {
  describe("event vectors over HTTP", () => {
    const recorder = createRecorder();
    // The vectors reuse ids; each case must reach the handlers on its own.
    const app = useApp(factory, () => ({ ...recordingOptions(recorder), idempotency: false }));
    beforeEach(() => {
      recorder.runs.length = 0;
      recorder.unknown.length = 0;
      recorder.errors.length = 0;
    });

    it.each(eventVectors.cases)("$name → $expect", async (c) => {
      const response = await send(app().webhookUrl, {
        headers: await signedHeaders(c.body),
        body: c.body,
      });
      if (c.expect === "ok") {
        expect(response.status).toBe(200);
        expect(json(response)).toEqual({ received: true });
        const seen = [...recorder.runs.map((r) => r.event), ...recorder.unknown];
        expect(seen).toHaveLength(1);
        const event = seen[0] as MappaEvent;
        expect(event.type).toBe(c.type);
        expect(event.raw).toEqual(JSON.parse(c.body));
        for (const [name, value] of Object.entries(c.fields ?? {})) {
          expect(field(event, name), name).toBe(value);
        }
        expect(recorder.errors).toEqual([]);
        return;
      }
      expect(response.status).toBe(400);
      expect(json(response).error).toBe(c.expect);
      expect(recorder.runs).toEqual([]);
      expect(recorder.unknown).toEqual([]);
      expect(recorder.errors.map((e) => [e.error.code, e.info.status])).toEqual([[c.expect, 400]]);
    });
  });
}

function describeBrokenClients(factory: ConformanceFactory): void {
  const BODY_TIMEOUT_MS = 300;
  /** One app per deadline: short to see a stall answered, long so an abort never races it. */
  const brokenClientApp = (bodyTimeoutMs: number) => {
    const recorder = createRecorder();
    const app = useApp(factory, () => ({ ...recordingOptions(recorder), bodyTimeoutMs }));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    beforeAll(() => {
      process.on("unhandledRejection", onUnhandled);
    });
    afterAll(() => {
      process.off("unhandledRejection", onUnhandled);
    });
    beforeEach(() => {
      recorder.errors.length = 0;
    });
    afterEach(() => {
      expect(unhandled).toEqual([]);
      expect(app().frameworkErrors?.() ?? []).toEqual([]);
    });
    return { recorder, app };
  };

  describe("clients that go away mid-body", () => {
    // A deadline far beyond any pause of a busy machine: the abort alone must be reported.
    const { recorder, app } = brokenClientApp(60_000);

    it.each([
      { label: "half a body with a declared length", chunked: false, half: true, pauseMs: 100 },
      { label: "half a chunked body", chunked: true, half: true, pauseMs: 100 },
      { label: "only the head, at once", chunked: false, half: false, pauseMs: 0 },
    ])(
      "reports a client gone after $label once, as request_aborted, and nothing else",
      async ({ chunked, half, pauseMs }) => {
        const id = freshId("aborted");
        const body = JSON.stringify(reportCompleted(id));
        const headers = (await signedHeaders(body)) as Record<string, string>;
        await abortMidBody(app().webhookUrl, {
          headers,
          body,
          sentBytes: half ? Math.floor(body.length / 2) : 0,
          chunked,
          pauseMs,
        });
        await waitFor(() => recorder.errors.length > 0, 20_000);
        // Anything reported late (a second report, a handler failure) would show up by now.
        await sleep(300);
        expect(recorder.errors.map((e) => [e.error.code, e.info.phase])).toEqual([
          ["request_aborted", "request"],
        ]);
        expect(runsOf(recorder, id)).toHaveLength(0);
        // The server is still fine.
        const next = JSON.stringify(reportCompleted(freshId("after_abort")));
        const response = await send(app().webhookUrl, {
          headers: await signedHeaders(next),
          body: next,
        });
        expect(response.status).toBe(200);
      },
    );
  });

  describe("clients that stall mid-body", () => {
    const { recorder, app } = brokenClientApp(BODY_TIMEOUT_MS);

    it.each([
      { label: "stalls", dripMs: undefined, chunked: false },
      { label: "stalls (chunked)", dripMs: undefined, chunked: true },
      { label: "drips a byte every 50 ms", dripMs: 50, chunked: false },
    ])(
      "answers 408 body_timeout to a body that $label past bodyTimeoutMs, and reports it",
      async ({ dripMs, chunked }) => {
        const id = freshId("stalled");
        const body = JSON.stringify(reportCompleted(id));
        const headers = (await signedHeaders(body)) as Record<string, string>;
        const result = await stallMidBody(app().webhookUrl, {
          headers,
          body,
          sentBytes: 10,
          chunked,
          ...(dripMs === undefined ? {} : { dripMs }),
        });
        expect(result.status).toBe(408);
        expect(JSON.parse(result.body).error).toBe("body_timeout");
        // Never before the deadline (a few ms of timer slack), and the body never completed.
        expect(result.elapsedMs).toBeGreaterThanOrEqual(BODY_TIMEOUT_MS - 20);
        expect(result.bytesSent).toBeLessThan(Buffer.byteLength(body));
        expect(recorder.errors.map((e) => [e.error.code, e.info.status])).toEqual([
          ["body_timeout", 408],
        ]);
        expect(runsOf(recorder, id)).toHaveLength(0);
      },
    );
  });
}

function runsOf(recorder: Recorder, id: string) {
  return recorder.runs.filter((r) => r.event.id === id);
}

function describeAckFirst(factory: ConformanceFactory): void {
  describe('ack: "first"', () => {
    const recorder = createRecorder();
    const app = useApp(factory, () => ({ ...recordingOptions(recorder), ack: "first" }));

    it("answers 200 before a slow handler finishes, and the handler still runs", async () => {
      const id = freshId("ack");
      let release = () => {};
      recorder.plans.set(id, { gate: new Promise<void>((resolve) => (release = resolve)) });
      const body = JSON.stringify(reportCompleted(id));
      const response = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
      expect(response.status).toBe(200);
      expect(recorder.effects).not.toContain(id);
      release();
      await waitFor(() => recorder.effects.includes(id));
    });

    it("reports a failing background handler to onError", async () => {
      const id = freshId("ackfail");
      recorder.plans.set(id, { failTimes: 1, delayMs: 20 });
      const body = JSON.stringify(reportCompleted(id));
      const response = await send(app().webhookUrl, { headers: await signedHeaders(body), body });
      expect(response.status).toBe(200);
      await waitFor(() =>
        recorder.errors.some((e) => e.info.phase === "background" && e.info.event?.id === id),
      );
      const reported = recorder.errors.find((e) => e.info.event?.id === id);
      expect(reported?.error.code).toBe("handler_failed");
    });
  });
}

/**
 * Registers the whole conformance suite for one adapter as vitest `describe` blocks. The
 * factory starts the framework's app with the adapter configured from the given options, on
 * 127.0.0.1 port 0, and tells where the webhook (and a JSON route beside it) listen.
 *
 * @example
 * ```ts
 * describeConformance("express 5", async (options) => {
 *   const app = express();
 *   app.use(mappaWebhook(options));
 *   app.use(express.json());
 *   app.post("/api/echo", (req, res) => res.json({ echo: req.body }));
 *   const server = app.listen(0, "127.0.0.1");
 *   await once(server, "listening");
 *   const { port } = server.address() as AddressInfo;
 *   return {
 *     webhookUrl: `http://127.0.0.1:${port}/webhooks/mappa`,
 *     jsonUrl: `http://127.0.0.1:${port}/api/echo`,
 *     close: () => new Promise((resolve) => server.close(() => resolve())),
 *   };
 * });
 * ```
 */
export function describeConformance(
  name: string,
  factory: ConformanceFactory,
  capabilities: ConformanceCapabilities = {},
): void {
  const resolved: Required<ConformanceCapabilities> = {
    jsonRoute: capabilities.jsonRoute ?? true,
    streamingBodyLimit: capabilities.streamingBodyLimit ?? true,
    ackFirst: capabilities.ackFirst ?? true,
    brokenClients: capabilities.brokenClients ?? true,
  };
  describe(`${name} conformance`, () => {
    describeSignatureVectors(factory);
    describeEventVectors(factory);
    describeDeliveries(factory, resolved);
    if (resolved.brokenClients) describeBrokenClients(factory);
    if (resolved.ackFirst) describeAckFirst(factory);
    describeEmulatorDeliveries(factory);
    describeTelemetry(factory);
  });
}

/** The core's values every adapter re-exports, so apps need no direct dependency on the core. */
export const ADAPTER_REEXPORTED_VALUES = ["isMappaWebhookError", "MappaWebhookError"] as const;
/** The core's types every adapter re-exports (or, NestJS's `MappaEvent`, declares as the same). */
export const ADAPTER_REEXPORTED_TYPES = [
  "MappaEvent",
  "MappaEventType",
  "MappaHandlerMap",
  "MappaKnownEvent",
  "MappaUnknownEvent",
  "MappaWebhooksOptions",
] as const;

/** The names a module's source exports: its `export { ... }` lists and its declarations. */
function exportedNames(source: string): Set<string> {
  const names = new Set<string>();
  for (const [, list] of source.matchAll(/export\s+(?:type\s+)?\{([^}]*)\}/g)) {
    for (const item of (list ?? "").split(",")) {
      const name = item
        .trim()
        .replace(/^type\s+/, "")
        .split(/\s+as\s+/)
        .pop()
        ?.trim();
      if (name) names.add(name);
    }
  }
  const declared = /export\s+(?:declare\s+)?(?:type|interface|const|function|class)\s+(\w+)/g;
  for (const [, name] of source.matchAll(declared)) if (name) names.add(name);
  return names;
}

/**
 * Checks one adapter's entry point re-exports the one list of the core's values and types
 * ({@link ADAPTER_REEXPORTED_VALUES}, {@link ADAPTER_REEXPORTED_TYPES}): the values are the
 * core's own (so `instanceof MappaWebhookError` holds across packages), the types are named in
 * its source.
 *
 * @example
 * ```ts
 * import * as adapter from "../src/index.js";
 * describeAdapterExports("express", adapter, new URL("../src/index.ts", import.meta.url));
 * ```
 */
export function describeAdapterExports(
  name: string,
  adapter: Record<string, unknown>,
  source: URL,
): void {
  describe(`${name} re-exports`, () => {
    it("re-exports the core's values, as the core's own", async () => {
      const core = (await import("@mappa-webhooks/core")) as Record<string, unknown>;
      for (const value of ADAPTER_REEXPORTED_VALUES) {
        expect(adapter[value], value).toBe(core[value]);
      }
    });

    it("re-exports the core's types", () => {
      const names = exportedNames(readFileSync(source, "utf8"));
      expect(ADAPTER_REEXPORTED_TYPES.filter((type) => !names.has(type))).toEqual([]);
    });
  });
}
export {
  describeJobTrackingContract,
  describeRecoveryWithStore,
  type JobTrackingContractOptions,
  type JobTrackingStoreFactory,
  type JobTrackingStoreUnderTest,
  type RecoveryStoreUnderTest,
} from "./tracking-contract.js";
