import { send } from "@mappa-webhooks/conformance";
import { type MappaWebhookError, signPayload } from "@mappa-webhooks/core";
import { afterEach, describe, expect, it } from "vitest";
import {
  createMappaWebhookHandler,
  type MappaLambdaContext,
  type MappaLambdaEvent,
  type MappaLambdaOptions,
} from "../src/index.js";
import { type EventSource, lambdaContext, serveLambda } from "./bridge.js";
import {
  albEvent,
  type Delivery,
  functionUrlEvent,
  httpApiV1Event,
  httpApiV2Event,
  restApiEvent,
} from "./events.js";

const secret = "whsec_lambda_tests";
let sequence = 0;

async function delivery(
  options: { note?: string; signatureHeader?: string; bytes?: Buffer } = {},
): Promise<Delivery & { id: string }> {
  sequence += 1;
  const id = `evt_lambda_${sequence}_${Date.now().toString(36)}`;
  const bytes =
    options.bytes ??
    Buffer.from(
      JSON.stringify({
        id,
        type: "report.completed",
        createdAt: "2026-01-17T12:05:00.000Z",
        data: {
          jobId: `job_${sequence}`,
          reportId: `rep_${sequence}`,
          status: "completed",
          ...(options.note === undefined ? {} : { note: options.note }),
        },
      }),
      "utf8",
    );
  const signature = await signPayload({ payload: new Uint8Array(bytes), secret });
  return {
    id,
    bytes,
    headers: {
      "Content-Type": "application/json",
      [options.signatureHeader ?? "Mappa-Signature"]: signature,
    },
  };
}

function recordingHandler(extra: Partial<MappaLambdaOptions> = {}) {
  const seen: Array<{ id: string | undefined; note: unknown; context: MappaLambdaContext }> = [];
  const errors: MappaWebhookError[] = [];
  const handler = createMappaWebhookHandler({
    secret,
    on: {
      "report.completed": (event, context) => {
        seen.push({ id: event.id, note: (event.data as { note?: unknown }).note, context });
      },
    },
    onError: (error) => errors.push(error),
    ...extra,
  });
  return { handler, seen, errors };
}

const utf8Note = "Zürich — 東京 — 🎉";

describe("API Gateway REST API (payload 1.0)", () => {
  it("verifies a text body with mixed-case headers and answers in the proxy result shape", async () => {
    const { handler, seen } = recordingHandler();
    const d = await delivery({ note: utf8Note });
    const context = lambdaContext();
    const result = await handler(restApiEvent(d), context);
    expect(result).toEqual({
      statusCode: 200,
      headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
      body: '{"received":true}',
      isBase64Encoded: false,
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.id).toBe(d.id);
    expect(seen[0]?.note).toBe(utf8Note);
    expect(seen[0]?.context.context).toBe(context);
    expect((seen[0]?.context.event as { resource?: string } | undefined)?.resource).toBe(
      "/webhooks/mappa",
    );
  });

  it("verifies the exact bytes of a base64 body (binary media types), even bytes that are not UTF-8", async () => {
    const { handler } = recordingHandler({ idempotency: false });
    // A signed body with a byte sequence no UTF-8 decoder keeps: only base64 carries it intact.
    const bytes = Buffer.concat([
      Buffer.from(
        '{"id":"evt_bin","type":"report.completed","data":{"jobId":"j","reportId":"r","status":"completed","raw":"',
      ),
      Buffer.from([0xc3, 0x28, 0xff]),
      Buffer.from('"}}'),
    ]);
    const d = await delivery({ bytes });
    const base64 = await handler(restApiEvent(d, { base64: true }));
    expect(base64.statusCode).toBe(200);
    // The same bytes passed as text were already decoded lossily before the function ran.
    const text = await handler(restApiEvent(d));
    expect(text.statusCode).toBe(401);
    expect(JSON.parse(text.body)).toEqual({ error: "signature_mismatch" });
  });

  it("reads the signature from multiValueHeaders alone and from headers alone", async () => {
    const { handler } = recordingHandler();
    const d = await delivery();
    const onlyMulti = { ...restApiEvent(d), headers: {} };
    expect((await handler(onlyMulti)).statusCode).toBe(200);
    const d2 = await delivery();
    const onlySingle = restApiEvent(d2, { multiValue: false });
    expect((await handler(onlySingle)).statusCode).toBe(200);
  });

  it("finds the header in any case: MAPPA-SIGNATURE, mappa-signature, Mappa-Signature", async () => {
    const { handler } = recordingHandler();
    for (const name of [
      "MAPPA-SIGNATURE",
      "mappa-signature",
      "Mappa-Signature",
      "mAPPA-sIGNATURE",
    ]) {
      const d = await delivery({ signatureHeader: name });
      expect((await handler(restApiEvent(d))).statusCode).toBe(200);
    }
  });

  it("answers 405 with Allow: POST to a GET", async () => {
    const { handler } = recordingHandler();
    const d = await delivery();
    const result = await handler(restApiEvent({ ...d, bytes: Buffer.alloc(0) }, { method: "GET" }));
    expect(result.statusCode).toBe(405);
    expect(result.headers?.allow).toBe("POST");
    // One map only: API Gateway merges both, emulators such as serverless-offline repeat values.
    expect(result.multiValueHeaders).toBeUndefined();
  });

  it("answers 413 to text and base64 bodies over maxBodyBytes", async () => {
    const { handler, errors } = recordingHandler({ maxBodyBytes: 1024 });
    const d = await delivery({ note: "x".repeat(2048) });
    for (const base64 of [false, true]) {
      const result = await handler(restApiEvent(d, { base64 }));
      expect(result.statusCode).toBe(413);
      expect(JSON.parse(result.body).error).toBe("payload_too_large");
    }
    expect(errors.map((e) => e.code)).toEqual(["payload_too_large", "payload_too_large"]);
  });

  it("answers 401 to a tampered body and 400 to a signed body that is not an event", async () => {
    const { handler } = recordingHandler();
    const d = await delivery();
    const tampered = { ...d, bytes: Buffer.from(d.bytes.toString().replace("rep_", "rex_")) };
    expect((await handler(restApiEvent(tampered))).statusCode).toBe(401);
    const notEvent = await delivery({ bytes: Buffer.from("[1,2,3]") });
    const result = await handler(restApiEvent(notEvent));
    expect(result.statusCode).toBe(400);
    expect(JSON.parse(result.body).error).toBe("invalid_event");
    const empty = await delivery({ bytes: Buffer.alloc(0) });
    expect(JSON.parse((await handler(restApiEvent(empty))).body).error).toBe("invalid_json");
  });
});

describe("API Gateway HTTP API, payload format 1.0", () => {
  it("is answered like a REST API event", async () => {
    const { handler } = recordingHandler();
    const d = await delivery();
    const result = await handler(httpApiV1Event(d, { base64: true }));
    expect(result).toMatchObject({ statusCode: 200, isBase64Encoded: false });
  });
});

describe.each([
  { name: "API Gateway HTTP API, payload format 2.0", make: httpApiV2Event },
  { name: "Lambda function URL", make: functionUrlEvent },
])("$name", ({ make }) => {
  it("answers with statusCode, headers and body only", async () => {
    const { handler, seen } = recordingHandler();
    const d = await delivery({ note: utf8Note });
    const result = await handler(make(d));
    expect(result).toEqual({
      statusCode: 200,
      headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
      body: '{"received":true}',
    });
    expect(seen[0]?.note).toBe(utf8Note);
  });

  it("verifies a base64 body and answers a duplicate without running the handler again", async () => {
    const { handler, seen } = recordingHandler();
    const d = await delivery();
    expect((await handler(make(d, { base64: true }))).statusCode).toBe(200);
    const again = await handler(make(d, { base64: true }));
    expect(again.statusCode).toBe(200);
    expect(JSON.parse(again.body as string)).toEqual({ received: true, duplicate: true });
    expect(seen).toHaveLength(1);
  });

  it("answers 405 to a GET without a body", async () => {
    const { handler } = recordingHandler();
    const d = await delivery();
    const result = await handler(make({ ...d, bytes: Buffer.alloc(0) }, { method: "GET" }));
    expect(result.statusCode).toBe(405);
    expect(result.headers?.allow).toBe("POST");
  });
});

describe("Application Load Balancer target", () => {
  it.each([false, true])(
    "answers with statusDescription and the header map the target group uses (multi-value: %s)",
    async (multiValue) => {
      const { handler } = recordingHandler();
      const d = await delivery();
      const result = await handler(albEvent(d, { multiValue, base64: multiValue }));
      expect(result.statusCode).toBe(200);
      expect(result.statusDescription).toBe("200 OK");
      expect(result.isBase64Encoded).toBe(false);
      expect(result.body).toBe('{"received":true}');
      if (multiValue) {
        expect(result.headers).toBeUndefined();
        expect(result.multiValueHeaders?.["content-type"]).toEqual([
          "application/json; charset=utf-8",
        ]);
      } else {
        expect(result.multiValueHeaders).toBeUndefined();
        expect(result.headers?.["content-type"]).toBe("application/json; charset=utf-8");
      }
    },
  );

  it("describes error statuses too", async () => {
    const { handler } = recordingHandler();
    const d = await delivery();
    const forged = await handler(
      albEvent({ ...d, headers: { ...d.headers, "Mappa-Signature": "t=1,v1=00" } }),
    );
    expect(forged.statusCode).toBe(401);
    expect(forged.statusDescription).toBe("401 Unauthorized");
    const get = await handler(albEvent({ ...d, bytes: Buffer.alloc(0) }, { method: "GET" }));
    expect(get.statusDescription).toBe("405 Method Not Allowed");
  });
});

describe("configuration and invocation mistakes", () => {
  it('refuses ack: "first", which cannot finish work on a frozen function', () => {
    expect(() =>
      createMappaWebhookHandler({ secret, ack: "first" } as unknown as MappaLambdaOptions),
    ).toThrow(expect.objectContaining({ code: "invalid_options" }));
  });

  it("refuses a missing secret", () => {
    expect(() => createMappaWebhookHandler({ secret: "" })).toThrow(
      expect.objectContaining({ code: "missing_secret" }),
    );
  });

  it("rejects an invocation that is not an HTTP event with a typed error naming the triggers", async () => {
    const { handler } = recordingHandler();
    const sqs = { Records: [{ messageId: "1", body: "{}" }] } as unknown as MappaLambdaEvent;
    await expect(handler(sqs)).rejects.toMatchObject({
      code: "invalid_options",
      message: expect.stringContaining("function URL"),
    });
    await expect(handler(null as unknown as MappaLambdaEvent)).rejects.toMatchObject({
      code: "invalid_options",
    });
  });
});

describe("text bodies over real HTTP (bridge.ts), as each source passes application/json", () => {
  const running: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const app of running.splice(0)) await app.close();
  });
  const sources: EventSource[] = ["rest", "http-v2", "function-url", "alb", "alb-multi"];

  it.each(sources)("%s: multi-byte UTF-8 sent in chunks arrives byte-exact", async (source) => {
    const { handler, seen } = recordingHandler();
    const app = await serveLambda(handler, source, "text");
    running.push(app);
    const d = await delivery({ note: utf8Note });
    const split = d.bytes.indexOf(Buffer.from("東", "utf8")) + 1;
    const response = await send(app.webhookUrl, {
      headers: d.headers,
      chunks: [d.bytes.subarray(0, split), d.bytes.subarray(split)],
    });
    expect(response.status).toBe(200);
    expect(seen.map((s) => s.note)).toEqual([utf8Note]);
    const get = await send(app.webhookUrl, { method: "GET" });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe("POST");
  });
});
