import * as core from "@mappa-webhooks/core";
import { createMappaWebhooks, verifySignature } from "@mappa-webhooks/core";
import { describe, expect, it } from "vitest";
import {
  createSignedDelivery,
  createSignedRequest,
  createTestEvent,
  signPayload,
} from "../src/index.js";

const secret = "whsec_test_kit";

describe("signing helpers", () => {
  it("re-exports the core's signer", () => {
    expect(signPayload).toBe(core.signPayload);
  });

  it("createSignedDelivery returns compact JSON and headers the real verifier accepts", async () => {
    const event = createTestEvent("report.completed");
    const { body, headers } = await createSignedDelivery(event, { secret });
    expect(body).toBe(JSON.stringify(event));
    expect(headers["content-type"]).toBe("application/json");
    expect(headers["mappa-signature"]).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    const result = await verifySignature({ payload: body, headers, secret });
    expect(result).toMatchObject({ ok: true, secretIndex: 0, headerName: "mappa-signature" });
  });

  it("signs a string body byte for byte, with a chosen timestamp and header", async () => {
    const body = '{ "pretty": true }\n';
    const signed = await createSignedDelivery(body, {
      secret,
      timestamp: 1_768_651_500,
      headerName: "Conduit-Signature",
    });
    expect(signed.body).toBe(body);
    expect(signed.headers["conduit-signature"]).toMatch(/^t=1768651500,v1=/);
    await expect(
      verifySignature({ payload: body, headers: signed.headers, secret, now: 1_768_651_500 }),
    ).resolves.toMatchObject({ headerName: "conduit-signature" });
  });

  it("rejects what cannot be a body", async () => {
    await expect(createSignedDelivery(42 as unknown as object, { secret })).rejects.toThrow(
      /object or the exact body string/,
    );
    await expect(createSignedDelivery({}, { secret: "" })).rejects.toMatchObject({
      code: "missing_secret",
    });
  });

  it("createSignedRequest builds a POST the core pipeline handles", async () => {
    const handled: string[] = [];
    const webhooks = createMappaWebhooks({
      secret,
      on: { "report.completed": (event) => void handled.push(event.data.reportId) },
    });
    const event = createTestEvent("report.completed");
    const request = await createSignedRequest("http://localhost/webhooks/mappa", event, { secret });
    expect(request.method).toBe("POST");
    const response = await webhooks.handleRequest(request);
    expect(response.status).toBe(200);
    expect(handled).toEqual([event.data.reportId]);
  });

  it("an old timestamp makes a replay the pipeline rejects", async () => {
    const webhooks = createMappaWebhooks({ secret });
    const request = await createSignedRequest(
      "http://localhost/x",
      createTestEvent("report.failed"),
      {
        secret,
        timestamp: new Date(Date.now() - 3_600_000),
      },
    );
    const response = await webhooks.handleRequest(request);
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: "timestamp_outside_tolerance" });
  });
});
