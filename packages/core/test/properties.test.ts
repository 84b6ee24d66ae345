import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isMappaWebhookError, parseEvent, signPayload, verifySignature } from "../src/index.js";

const NOW = 1_800_000_000;
const TOLERANCE = 300;
const runs = { numRuns: 150 };

const bodies = fc.uint8Array({ minLength: 0, maxLength: 512 });
const secrets = fc.string({ minLength: 1, maxLength: 40 });
const timestamps = fc.integer({ min: NOW - TOLERANCE, max: NOW + TOLERANCE });

async function verdict(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
    return "ok";
  } catch (error) {
    // Anything but our error class is a bug.
    if (!isMappaWebhookError(error)) throw error;
    return error.code;
  }
}

describe("verification properties", () => {
  it("a correct signature is always accepted", async () => {
    await fc.assert(
      fc.asyncProperty(bodies, secrets, timestamps, async (body, secret, t) => {
        const header = await signPayload({ payload: body, secret, timestamp: t });
        const result = await verifySignature({
          payload: body,
          headers: { "mappa-signature": header },
          secret,
          now: NOW,
        });
        expect(result.timestamp).toBe(t);
      }),
      runs,
    );
  });

  it("any change to the body is rejected", async () => {
    await fc.assert(
      fc.asyncProperty(
        bodies.filter((b) => b.length > 0),
        secrets,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        async (body, secret, at, flip) => {
          const header = await signPayload({ payload: body, secret, timestamp: NOW });
          const changed = Uint8Array.from(body);
          const i = at % changed.length;
          changed[i] = (changed[i] as number) ^ flip;
          const code = await verdict(() =>
            verifySignature({
              payload: changed,
              headers: { "mappa-signature": header },
              secret,
              now: NOW,
            }),
          );
          expect(code).toBe("signature_mismatch");
        },
      ),
      runs,
    );
  });

  it("any change to the timestamp, the signature or the secret is rejected", async () => {
    await fc.assert(
      fc.asyncProperty(
        bodies,
        secrets,
        secrets,
        fc.integer({ min: 1, max: 100 }),
        fc.nat(63),
        async (body, secret, other, shift, digit) => {
          fc.pre(other !== secret);
          const header = await signPayload({ payload: body, secret, timestamp: NOW });
          const hex = header.slice(header.indexOf("v1=") + 3);
          const flipped = `${hex.slice(0, digit)}${hex[digit] === "0" ? "1" : "0"}${hex.slice(digit + 1)}`;
          const variants = [
            { header: `t=${NOW + shift},v1=${hex}`, secret },
            { header: `t=${NOW},v1=${flipped}`, secret },
            { header, secret: other },
          ];
          for (const v of variants) {
            const code = await verdict(() =>
              verifySignature({
                payload: body,
                headers: { "mappa-signature": v.header },
                secret: v.secret,
                now: NOW,
              }),
            );
            expect(code).toBe("signature_mismatch");
          }
        },
      ),
      runs,
    );
  });

  it("no header, body or clock makes verify throw anything but a MappaWebhookError", async () => {
    const headerValue = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.array(fc.string({ maxLength: 50 }), { maxLength: 3 }),
      fc
        .tuple(fc.oneof(fc.integer(), fc.string()), fc.array(fc.string(), { maxLength: 4 }))
        .map(([t, vs]) => [`t=${t}`, ...vs.map((v) => `v1=${v}`)].join(",")),
      fc.constant(undefined),
      fc.integer(),
    );
    const payload = fc.oneof(
      fc.string(),
      fc.uint8Array(),
      fc.constant(null),
      fc.object(),
      fc.integer(),
    );
    const clock = fc.oneof(fc.integer(), fc.double(), fc.constant(Number.NaN));
    await fc.assert(
      fc.asyncProperty(
        headerValue,
        payload,
        clock,
        fc.oneof(secrets, fc.array(secrets)),
        async (h, p, now, s) => {
          await verdict(() =>
            verifySignature({
              payload: p as string,
              headers: { "mappa-signature": h as string },
              secret: s,
              now,
            }),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it("no input makes parseEvent throw anything but a MappaWebhookError", () => {
    const json = fc.oneof(
      fc.json(),
      fc.string(),
      fc.jsonValue().map((v) => JSON.stringify(v)),
    );
    const eventish = fc
      .record({
        id: fc.oneof(fc.string(), fc.integer(), fc.constant(undefined)),
        type: fc.oneof(
          fc.constantFrom(
            "report.completed",
            "report.failed",
            "matching.completed",
            "matching.failed",
          ),
          fc.string(),
          fc.integer(),
        ),
        data: fc.oneof(
          fc.jsonValue(),
          fc.dictionary(
            fc.constantFrom("jobId", "reportId", "matchingId", "error", "__proto__"),
            fc.jsonValue(),
          ),
        ),
      })
      .map((v) => JSON.stringify(v));
    fc.assert(
      fc.property(fc.oneof(json, eventish), (text) => {
        try {
          parseEvent(text);
        } catch (error) {
          if (!isMappaWebhookError(error)) throw error;
        }
      }),
      { numRuns: 500 },
    );
  });
});
