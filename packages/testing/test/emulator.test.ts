// The emulator through the testing kit, the way a user's suite uses it: start it in beforeAll on a
// manual clock, run the code under test against it, advance the clock, assert the deliveries.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMappaWebhooks, type MappaEvent } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildEventBody,
  MAPPA_RETRY_SCHEDULE_MS as EMULATOR_SCHEDULE,
  type MappaEmulator,
  startMappaEmulator,
} from "../src/emulator.js";
import { createTestEvent, MAPPA_RETRY_SCHEDULE_MS, TEST_EVENT_SHAPES } from "../src/index.js";

const secret = "whsec_suite";
let mappa: MappaEmulator;
let server: Server;
let webhookUrl: string;
const handled: MappaEvent[] = [];

beforeAll(async () => {
  mappa = await startMappaEmulator({ clock: "manual", secret });
  // the app under test: a receiver built on the core
  const webhooks = createMappaWebhooks({ secret });
  webhooks.onAny((event) => void handled.push(event));
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const answer = await webhooks.handle({
        method: req.method ?? "POST",
        headers: req.headers,
        rawBody: Buffer.concat(chunks),
      });
      res.writeHead(answer.status, answer.headers).end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  webhookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/mappa`;
});

afterAll(async () => {
  await mappa.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** The code under test: asks Mappa for a report, as an app would. */
async function requestReport(baseUrl: string, label?: string): Promise<string> {
  const headers = { "Mappa-Api-Key": "test", "Content-Type": "application/json" };
  const form = new FormData();
  form.append("file", new Blob([new Uint8Array(16)]), "call");
  form.append("label", "call");
  const upload = await fetch(`${baseUrl}/v1/files`, {
    method: "POST",
    body: form,
    headers: { "Mappa-Api-Key": "test" },
  });
  const { mediaId } = (await upload.json()) as { mediaId: string };
  const created = await fetch(`${baseUrl}/v1/reports/jobs`, {
    method: "POST",
    headers: { ...headers, "Idempotency-Key": `idem_${crypto.randomUUID()}` },
    body: JSON.stringify({
      media: { mediaId },
      output: { template: "general_report" },
      target: { strategy: "dominant", on_miss: "error" },
      ...(label === undefined ? {} : { label }),
      webhook: { url: webhookUrl },
    }),
  });
  return ((await created.json()) as { jobId: string }).jobId;
}

describe("@mappa-webhooks/testing/emulator in a user's suite", () => {
  it("a report job's webhook reaches the receiver as a typed event", async () => {
    const jobId = await requestReport(mappa.url);
    await mappa.advance(150_000);
    expect(mappa.deliveries({ jobId })[0]?.state).toBe("delivered");
    const event = handled.find((e) => (e.data as { jobId?: string }).jobId === jobId);
    expect(event?.type).toBe("report.completed");
  });

  it("a failing job and a webhook the receiver never gets, then a resend", async () => {
    const jobId = await requestReport(mappa.url, "fail:audio_too_short");
    mappa.planJob(jobId, { webhook: { drop: "all" } });
    await mappa.advance(150_000 + 2_135_000);
    const [delivery] = mappa.deliveries({ jobId });
    expect(delivery?.state).toBe("abandoned");
    await mappa.resend(delivery?.eventId as string);
    const event = handled.find((e) => (e.data as { jobId?: string }).jobId === jobId);
    expect(event).toMatchObject({
      type: "report.failed",
      data: { error: { code: "audio_too_short" } },
    });
  });
});

describe("one schedule and one set of shapes", () => {
  it("the emulator retries on the simulator's schedule", () => {
    expect(EMULATOR_SCHEDULE).toEqual(MAPPA_RETRY_SCHEDULE_MS);
  });

  it("the emulator's bodies have the fields, order and statuses of createTestEvent, per shape", () => {
    for (const shape of TEST_EVENT_SHAPES) {
      for (const type of [
        "report.completed",
        "report.failed",
        "matching.completed",
        "matching.failed",
      ] as const) {
        const expected = createTestEvent(type, {}, { shape }) as unknown as Record<string, unknown>;
        const data = { ...(expected.data as Record<string, unknown>) };
        if (data.status === "completed") data.status = "succeeded";
        const body = buildEventBody(shape, "evt_1", type, new Date().toISOString(), data);
        expect(Object.keys(body)).toEqual(Object.keys(expected));
        expect(body.data).toEqual(expected.data);
      }
    }
  });
});
