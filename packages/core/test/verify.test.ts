import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import { constructEvent, MappaWebhookError, signPayload, verifySignature } from "../src/index.js";

const secret = "whsec_unit_6a1f";
const now = 1_800_000_000;
const body = JSON.stringify({
  id: "evt_1",
  type: "report.completed",
  createdAt: "2027-01-15T08:00:00.000Z",
  data: { jobId: "job_1", reportId: "rep_1", status: "completed" },
});

async function failure(run: () => Promise<unknown>): Promise<MappaWebhookError> {
  try {
    await run();
  } catch (error) {
    if (error instanceof MappaWebhookError) return error;
    throw error;
  }
  throw new Error("expected a MappaWebhookError");
}

describe("verifySignature", () => {
  it("reports the matching secret's index, the timestamp and the header read", async () => {
    const header = await signPayload({ payload: body, secret: "whsec_old", timestamp: now });
    const result = await verifySignature({
      payload: body,
      headers: { "mappa-signature": header },
      secret: [secret, "whsec_old"],
      now,
    });
    expect(result).toEqual({
      ok: true,
      timestamp: now,
      secretIndex: 1,
      headerName: "mappa-signature",
    });
  });

  it("accepts conduit-signature by default, and only the named header when one is set", async () => {
    const header = await signPayload({ payload: body, secret, timestamp: now });
    const result = await verifySignature({
      payload: body,
      headers: { "Conduit-Signature": header },
      secret,
      now,
    });
    expect(result.headerName).toBe("conduit-signature");
    const error = await failure(() =>
      verifySignature({
        payload: body,
        headers: { "conduit-signature": header },
        secret,
        now,
        headerName: "mappa-signature",
      }),
    );
    expect(error.code).toBe("missing_signature");
    const custom = await verifySignature({
      payload: body,
      headers: { "x-custom": header },
      secret,
      now,
      headerName: ["X-Custom"],
    });
    expect(custom.headerName).toBe("x-custom");
  });

  it("compares a bounded number of v1 entries", async () => {
    const header = await signPayload({ payload: body, secret, timestamp: now });
    const good = header.split("v1=")[1];
    const wrong = Array.from({ length: 8 }, () => `v1=${"0".repeat(64)}`).join(",");
    const error = await failure(() =>
      verifySignature({
        payload: body,
        headers: { "mappa-signature": `t=${now},${wrong},v1=${good}` },
        secret,
        now,
      }),
    );
    expect(error.code).toBe("signature_mismatch");
    const within = Array.from({ length: 7 }, () => `v1=${"0".repeat(64)}`).join(",");
    const ok = await verifySignature({
      payload: body,
      headers: { "mappa-signature": `t=${now},${within},v1=${good}` },
      secret,
      now,
    });
    expect(ok.ok).toBe(true);
  });

  it("rejects configuration mistakes with missing_secret", async () => {
    for (const bad of ["", [], [""], undefined, 42]) {
      const error = await failure(() =>
        verifySignature({ payload: body, headers: {}, secret: bad as unknown as string, now }),
      );
      expect(error.code).toBe("missing_secret");
      expect(error.status).toBe(500);
    }
  });

  it("never puts the secret or the expected signature in a message", async () => {
    const header = await signPayload({ payload: body, secret, timestamp: now });
    const expected = header.split("v1=")[1] as string;
    const attempts = [
      () =>
        verifySignature({
          payload: `${body} `,
          headers: { "mappa-signature": header },
          secret,
          now,
        }),
      () =>
        verifySignature({
          payload: body,
          headers: { "mappa-signature": header },
          secret: `${secret}x`,
          now,
        }),
      () =>
        verifySignature({
          payload: body,
          headers: { "mappa-signature": header },
          secret,
          now: now + 999,
        }),
      () =>
        verifySignature({
          payload: body,
          headers: { "mappa-signature": `t=${now},v1=abc` },
          secret,
          now,
        }),
    ];
    for (const attempt of attempts) {
      const error = await failure(attempt);
      expect(error.message).not.toContain(secret);
      expect(error.message).not.toContain(expected);
      expect(error.message).toMatch(/^@mappa-webhooks: /);
    }
  });

  it("says how far off the timestamp is and in which direction", async () => {
    const header = await signPayload({ payload: body, secret, timestamp: now - 400 });
    const error = await failure(() =>
      verifySignature({ payload: body, headers: { "mappa-signature": header }, secret, now }),
    );
    expect(error.code).toBe("timestamp_outside_tolerance");
    expect(error.message).toContain("400 s in the past");
  });

  describe("mismatch hints", () => {
    const signed = async () => ({
      "mappa-signature": await signPayload({ payload: body, secret, timestamp: now }),
    });

    it("names a secret with surrounding whitespace", async () => {
      const error = await failure(async () =>
        verifySignature({ payload: body, headers: await signed(), secret: `${secret}\n`, now }),
      );
      expect(error.hint).toMatch(/whitespace/);
    });

    it("names a parsed object passed as payload", async () => {
      const error = await failure(async () =>
        verifySignature({ payload: JSON.parse(body), headers: await signed(), secret, now }),
      );
      expect(error.code).toBe("signature_mismatch");
      expect(error.hint).toMatch(/parsed object/);
    });

    it("names [object Object]", async () => {
      const error = await failure(async () =>
        verifySignature({ payload: String({}), headers: await signed(), secret, now }),
      );
      expect(error.hint).toMatch(/\[object Object\]/);
    });

    it("names a re-serialised (pretty-printed) body", async () => {
      const pretty = JSON.stringify(JSON.parse(body), null, 2);
      const error = await failure(async () =>
        verifySignature({ payload: Buffer.from(pretty), headers: await signed(), secret, now }),
      );
      expect(error.hint).toMatch(/re-serialised/);
    });

    it("names an empty body", async () => {
      const error = await failure(async () =>
        verifySignature({ payload: "", headers: await signed(), secret, now }),
      );
      expect(error.hint).toMatch(/empty/);
    });

    it("gives no hint when nothing can be seen", async () => {
      const error = await failure(async () =>
        verifySignature({ payload: body, headers: await signed(), secret: "whsec_other", now }),
      );
      expect(error.hint).toBeUndefined();
    });
  });
});

describe("signPayload", () => {
  it("signs with the current time by default and accepts a Date", async () => {
    const before = Math.floor(Date.now() / 1000);
    const header = await signPayload({ payload: body, secret });
    const t = Number(/t=(\d+)/.exec(header)?.[1]);
    expect(t).toBeGreaterThanOrEqual(before);
    expect(await signPayload({ payload: body, secret, timestamp: new Date(now * 1000) })).toBe(
      await signPayload({ payload: body, secret, timestamp: now }),
    );
  });

  it("refuses an object payload and a bad timestamp", async () => {
    expect(
      (await failure(() => signPayload({ payload: {} as unknown as string, secret }))).code,
    ).toBe("invalid_options");
    expect((await failure(() => signPayload({ payload: body, secret, timestamp: 1.5 }))).code).toBe(
      "invalid_options",
    );
  });
});

describe("constructEvent", () => {
  it("verifies then returns the typed event", async () => {
    const header = await signPayload({ payload: body, secret, timestamp: now });
    const event = await constructEvent({
      payload: body,
      headers: { "mappa-signature": header },
      secret,
      now,
    });
    expect(event.known && event.type === "report.completed" && event.data.reportId).toBe("rep_1");
  });

  it("does not parse a body whose signature fails", async () => {
    const error = await failure(() =>
      constructEvent({
        payload: "{not json",
        headers: { "mappa-signature": `t=${now},v1=00` },
        secret,
        now,
      }),
    );
    expect(error.code).toBe("signature_mismatch");
  });
});
