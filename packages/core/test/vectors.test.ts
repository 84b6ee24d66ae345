import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import { cryptoRuntime, isMappaWebhookError, parseEvent, verifySignature } from "../src/index.js";
import events from "./fixtures/events.json" with { type: "json" };
import signature from "./fixtures/signature.json" with { type: "json" };

type HeaderMap = Record<string, string | string[]>;
interface SignatureCase {
  name: string;
  bodyBase64: string;
  headers: HeaderMap;
  expect: string;
  secrets?: string[];
  toleranceSec?: number;
}

async function outcome(run: () => Promise<unknown> | unknown): Promise<string> {
  try {
    await run();
    return "ok";
  } catch (error) {
    if (!isMappaWebhookError(error)) throw error;
    return error.code;
  }
}

const cases = signature.cases as SignatureCase[];

describe(`signature vectors (${cryptoRuntime} crypto)`, () => {
  it("covers every vector, on the crypto path this project selects", () => {
    expect(cases.length).toBe(43);
    expect(cryptoRuntime).toBe(process.env.EXPECTED_CRYPTO_RUNTIME);
  });

  // Each vector runs with the body as bytes, as an ArrayBuffer, as a Buffer view into a larger
  // pool, and as a string where the bytes are valid UTF-8.
  it.each(cases)("$name → $expect", async (c) => {
    const bytes = Buffer.from(c.bodyBase64, "base64");
    const pooled = Buffer.concat([Buffer.from("garbage-before"), bytes, Buffer.from("after")]);
    const view = pooled.subarray(14, 14 + bytes.length);
    const arrayBuffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const payloads: Array<string | Uint8Array | ArrayBuffer> = [
      new Uint8Array(bytes),
      view,
      arrayBuffer,
    ];
    const text = bytes.toString("utf8");
    if (Buffer.from(text, "utf8").equals(bytes)) payloads.push(text);

    for (const payload of payloads) {
      const result = await outcome(() =>
        verifySignature({
          payload,
          headers: c.headers,
          secret: c.secrets ?? signature.secret,
          toleranceSec: c.toleranceSec ?? signature.toleranceSec,
          now: signature.now,
        }),
      );
      expect(result).toBe(c.expect);
    }
  });

  it.each(cases.filter((c) => c.expect === "ok"))(
    "$name also verifies from a Fetch Headers",
    async (c) => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(c.headers)) {
        headers.set(name, Array.isArray(value) ? (value[0] as string) : value);
      }
      const result = await verifySignature({
        payload: Buffer.from(c.bodyBase64, "base64"),
        headers,
        secret: c.secrets ?? signature.secret,
        toleranceSec: c.toleranceSec ?? signature.toleranceSec,
        now: () => signature.now,
      });
      expect(result.ok).toBe(true);
    },
  );
});

interface EventVectorCase {
  name: string;
  body: string;
  expect: string;
  type?: string;
  fields?: Record<string, unknown>;
}

describe("event vectors", () => {
  const eventCases: EventVectorCase[] = events.cases;

  it("has every case of the shared vectors", () => {
    expect(eventCases.length).toBe(26);
    expect(eventCases.filter((c) => c.fields !== undefined).length).toBeGreaterThan(0);
  });

  it.each(eventCases)("$name → $expect", (c) => {
    let result: string;
    try {
      const event = parseEvent(c.body);
      expect(event.type).toBe(c.type);
      for (const [field, value] of Object.entries(c.fields ?? {})) {
        expect((event as unknown as Record<string, unknown>)[field]).toBe(value);
      }
      // Each top-level field is kept exactly as sent, absent ones as undefined.
      const sent = JSON.parse(c.body) as Record<string, unknown>;
      expect(event.id).toBe(sent.id);
      expect(event.createdAt).toBe(sent.createdAt);
      expect(event.timestamp).toBe(sent.timestamp);
      expect(event.occurredAt).toBe(sent.createdAt ?? sent.timestamp);
      result = "ok";
    } catch (error) {
      if (!isMappaWebhookError(error)) throw error;
      result = error.code;
    }
    expect(result).toBe(c.expect);
  });
});
