import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  MAPPA_RETRY_SCHEDULE_MS,
  type MappaEmulator,
  type MappaEmulatorOptions,
  startMappaEmulator,
} from "../src/index.js";
import {
  type ConduitError,
  createConduitClient,
  verifyConduitWebhook,
  verifySignatureScheme,
} from "./conduit-client.js";
import { type Received, reportBody, startReceiver, until } from "./helpers.js";

const SECRET = "whsec_emulator_test";
let emulator: MappaEmulator | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await emulator?.close();
  emulator = undefined;
  for (const c of cleanups.splice(0)) await c();
});

/** A receiver that verifies like conduit (§11) and answers 401 to a bad signature, else `answer(n)`. */
async function verifyingReceiver(answer: (n: number) => number = () => 200) {
  const verdicts: string[] = [];
  const receiver = await startReceiver((n, r: Received) => {
    try {
      verifyConduitWebhook(r.body, r.headers["conduit-signature"] as string | undefined, SECRET);
      verdicts.push("ok");
      return answer(n);
    } catch (error) {
      verdicts.push((error as ConduitError).code);
      return 401;
    }
  });
  cleanups.push(receiver.close);
  return { ...receiver, verdicts };
}

async function setup(options: MappaEmulatorOptions = {}) {
  emulator = await startMappaEmulator({ clock: "manual", secret: SECRET, ...options });
  const client = createConduitClient({ baseUrl: emulator.url, apiKey: "k" });
  const { mediaId } = await client.upload(new Uint8Array(32), "call");
  const createJob = async (url: string, extra: Record<string, unknown> = {}) =>
    (await client.createReport(reportBody(mediaId, { webhook: { url }, ...extra }))).jobId;
  return { emulator, client, mediaId, createJob };
}

const offsets = (times: string[]) =>
  times.map((t) => Date.parse(t) - Date.parse(times[0] as string));

describe("webhook deliveries", () => {
  it("POSTs the current shape with conduit-signature, the job's webhook.headers, once the report is readable", async () => {
    const receiver = await verifyingReceiver();
    const { emulator, client, createJob } = await setup();
    const jobId = await createJob(receiver.url, {
      webhook: { url: receiver.url, headers: { "X-Tenant": "acme" } },
    });
    await emulator.advance(149_999);
    expect(receiver.received).toHaveLength(0);
    await emulator.advance(1);
    expect(receiver.verdicts).toEqual(["ok"]);
    const [request] = receiver.received;
    expect(request?.headers["x-tenant"]).toBe("acme");
    expect(request?.headers["content-type"]).toBe("application/json");
    const event = verifyConduitWebhook(
      request?.body as string,
      request?.headers["conduit-signature"] as string,
      SECRET,
    );
    const job = await client.getJob(jobId);
    expect(Object.keys(event)).toEqual(["id", "type", "createdAt", "timestamp", "data"]);
    expect(event).toMatchObject({
      type: "report.completed",
      data: { jobId, reportId: job.reportId, status: "succeeded" },
    });
    expect((await client.getReport(job.reportId as string)).jobId).toBe(jobId);
    const [delivery] = emulator.deliveries({ jobId });
    expect(delivery).toMatchObject({
      eventId: event.id,
      state: "delivered",
      attempts: [{ attempt: 1, kind: "scheduled", status: 200, ok: true }],
    });
  });

  it("follows Mappa's schedule on the emulator's clock (0, 5 s, 30 s, 5 min, 30 min), same event id, then abandons", async () => {
    const receiver = await verifyingReceiver(() => 500);
    const { emulator, createJob } = await setup();
    const jobId = await createJob(receiver.url);
    await emulator.advance(150_000);
    expect(receiver.received).toHaveLength(1);
    await emulator.advance(4_999);
    expect(receiver.received).toHaveLength(1);
    await emulator.advance(1);
    expect(receiver.received).toHaveLength(2);
    await emulator.advance(2_130_000);
    expect(receiver.received).toHaveLength(5);
    const [delivery] = emulator.deliveries({ jobId });
    expect(delivery?.state).toBe("abandoned");
    expect(delivery?.nextAttemptAt).toBeNull();
    expect(offsets(delivery?.attempts.map((a) => a.at) ?? [])).toEqual([
      0, 5_000, 35_000, 335_000, 2_135_000,
    ]);
    expect(MAPPA_RETRY_SCHEDULE_MS).toEqual([0, 5_000, 30_000, 300_000, 1_800_000]);
    const ids = receiver.received.map((r) => (JSON.parse(r.body) as { id: string }).id);
    expect(new Set(ids)).toEqual(new Set([delivery?.eventId]));
    expect(new Set(receiver.received.map((r) => r.body)).size).toBe(1);
    await emulator.advance(10_000_000);
    expect(receiver.received).toHaveLength(5);
  });

  it("records every attempt: time, status, latency, answer; a refused connection has an error code", async () => {
    const { emulator, createJob } = await setup({ retrySchedule: [0, 1_000] });
    const closed = await startReceiver();
    await closed.close(); // nothing listens on its port any more
    const jobId = await createJob(closed.url);
    await emulator.advance(151_000);
    const [delivery] = emulator.deliveries({ jobId });
    expect(delivery?.state).toBe("abandoned");
    expect(delivery?.attempts.map((a) => a.errorCode)).toEqual(["ECONNREFUSED", "ECONNREFUSED"]);
    const receiver = await verifyingReceiver();
    const ok = await createJob(receiver.url);
    await emulator.advance(150_000);
    const attempt = emulator.deliveries({ jobId: ok })[0]?.attempts[0];
    expect(attempt).toMatchObject({ status: 200, ok: true, responseBody: '{"n":1}' });
    expect(attempt?.latencyMs).toBeGreaterThan(0);
    expect(Math.abs((attempt?.signatureTimestamp ?? 0) - Date.now() / 1000)).toBeLessThan(60);
  });

  it("gives up on an attempt after webhookTimeoutMs and retries", async () => {
    const hanging = createServer(() => {});
    await new Promise<void>((resolve) => hanging.listen(0, "127.0.0.1", resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          hanging.closeAllConnections();
          hanging.close(() => resolve());
        }),
    );
    const { emulator, createJob } = await setup({
      webhookTimeoutMs: 300,
      retrySchedule: [0, 5_000],
    });
    const jobId = await createJob(
      `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/hook`,
    );
    await emulator.advance(155_000);
    expect(emulator.deliveries({ jobId })[0]?.attempts.map((a) => a.errorCode)).toEqual([
      "TIMEOUT",
      "TIMEOUT",
    ]);
  });

  it("sends report.failed for fail:<code> and nothing for a canceled job", async () => {
    const receiver = await verifyingReceiver();
    const { emulator, client, createJob } = await setup();
    const failed = await createJob(receiver.url, { label: "fail:target_not_found" });
    const canceled = await createJob(receiver.url);
    await emulator.advance(10_000);
    await client.cancelJob(canceled);
    await emulator.advance(200_000);
    expect(receiver.received).toHaveLength(1);
    const event = JSON.parse(receiver.received[0]?.body as string);
    expect(event).toMatchObject({
      type: "report.failed",
      data: {
        jobId: failed,
        status: "failed",
        error: {
          code: "target_not_found",
          message: "Could not identify the target speaker in the recording.",
        },
      },
    });
    expect(emulator.deliveries({ jobId: canceled })).toEqual([]);
  });

  it("sends matching.completed for a matching job", async () => {
    const receiver = await verifyingReceiver();
    const { emulator, client } = await setup();
    const a = emulator.addEntity({ label: "A" });
    const b = emulator.addEntity({ label: "B" });
    const { jobId } = await client.createMatching({
      context: "behavioral_compatibility",
      target: { type: "entity_id", entityId: a.id },
      group: [{ type: "entity_id", entityId: b.id }],
      webhook: { url: receiver.url },
    });
    await emulator.advance(60_000);
    const event = verifyConduitWebhook(
      receiver.received[0]?.body as string,
      receiver.received[0]?.headers["conduit-signature"] as string,
      SECRET,
    );
    expect(event).toMatchObject({
      type: "matching.completed",
      data: { jobId, status: "succeeded", matchingId: emulator.job(jobId)?.matchingId },
    });
  });

  it("speaks the guide's and mappa-node 1.2's shapes with mappa-signature", async () => {
    for (const shape of ["guide", "mappa-node-1.2"] as const) {
      const receiver = await startReceiver();
      cleanups.push(receiver.close);
      const { emulator, createJob } = await setup({ shape });
      await createJob(receiver.url);
      await emulator.advance(150_000);
      const [request] = receiver.received;
      expect(request?.headers["conduit-signature"]).toBeUndefined();
      const header = request?.headers["mappa-signature"] as string;
      // the same scheme: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">
      expect(() => verifySignatureScheme(request?.body as string, header, SECRET)).not.toThrow();
      const event = JSON.parse(request?.body as string);
      if (shape === "guide") {
        expect(Object.keys(event)).toEqual(["id", "type", "createdAt", "data"]);
        expect(event.data.status).toBe("completed");
      } else {
        expect(Object.keys(event)).toEqual(["type", "timestamp", "data"]);
        expect(event.data.status).toBe("succeeded");
      }
      await emulator.close();
    }
  });

  it("resends an abandoned event later with the same id and body", async () => {
    let healthy = false;
    const receiver = await verifyingReceiver(() => (healthy ? 200 : 503));
    const { emulator, createJob } = await setup();
    const jobId = await createJob(receiver.url);
    emulator.planJob(jobId, { webhook: { drop: "all" } });
    await emulator.advance(150_000 + 2_135_000);
    const [delivery] = emulator.deliveries({ jobId });
    expect(delivery?.state).toBe("abandoned");
    expect(receiver.received).toHaveLength(0);
    expect(delivery?.attempts.map((a) => a.errorCode)).toEqual(Array(5).fill("DROPPED"));
    healthy = true;
    const attempt = await emulator.resend(delivery?.eventId as string);
    expect(attempt).toMatchObject({ attempt: 6, kind: "resend", ok: true, status: 200 });
    expect(emulator.delivery(delivery?.eventId as string)?.state).toBe("delivered");
    expect(receiver.received[0]?.body).toBe(delivery?.body);
    await expect(emulator.resend("evt_unknown")).rejects.toThrow(/no delivery/);
  });
});

describe("faults", () => {
  it("drop N: the first N attempts never reach the receiver; the next one does, on schedule", async () => {
    const receiver = await verifyingReceiver();
    const { emulator, createJob } = await setup();
    const jobId = await createJob(receiver.url);
    emulator.planJob(jobId, { webhook: { drop: 2 } });
    await emulator.advance(150_000 + 35_000);
    const [delivery] = emulator.deliveries({ jobId });
    expect(delivery?.attempts.map((a) => a.fault ?? a.status)).toEqual(["drop", "drop", 200]);
    expect(receiver.received).toHaveLength(1);
    expect(delivery?.state).toBe("delivered");
  });

  it("fail N: sent, but counted failed whatever the answer (a lost reply), so the receiver sees a retry", async () => {
    const receiver = await verifyingReceiver();
    const { emulator, createJob } = await setup();
    emulator.planNext(1, { webhook: { fail: 1 } });
    const jobId = await createJob(receiver.url);
    await emulator.advance(155_000);
    expect(receiver.received).toHaveLength(2);
    expect(
      emulator.deliveries({ jobId })[0]?.attempts.map((a) => [a.status, a.ok, a.fault]),
    ).toEqual([
      [200, false, "fail"],
      [200, true, undefined],
    ]);
    expect(receiver.received[0]?.body).toBe(receiver.received[1]?.body);
  });

  it("duplicate: a delivered event is sent once more with the same id", async () => {
    const receiver = await verifyingReceiver();
    const { emulator, createJob } = await setup();
    const jobId = await createJob(receiver.url);
    emulator.planJob(jobId, { webhook: { duplicate: true } });
    await emulator.advance(150_000);
    expect(receiver.received.map((r) => r.body)).toEqual([
      receiver.received[0]?.body,
      receiver.received[0]?.body,
    ]);
    expect(emulator.deliveries({ jobId })[0]?.attempts.map((a) => a.kind)).toEqual([
      "scheduled",
      "duplicate",
    ]);
  });

  it("reorder: an event is held until the next one was sent, so they arrive out of order", async () => {
    const receiver = await verifyingReceiver();
    const { emulator, createJob } = await setup();
    const early = await createJob(receiver.url);
    emulator.planJob(early, { webhook: { reorder: true } });
    await emulator.advance(10_000);
    const late = await createJob(receiver.url);
    await emulator.advance(145_000);
    expect(receiver.received).toHaveLength(0);
    await emulator.advance(10_000);
    const jobIds = receiver.received.map((r) => JSON.parse(r.body).data.jobId);
    expect(jobIds).toEqual([late, early]);
  });

  it("delay: the first attempt waits delayMs on the emulator's clock", async () => {
    const receiver = await verifyingReceiver();
    const { emulator, createJob } = await setup();
    emulator.planNext(1, { webhook: { delayMs: 60_000 } });
    await createJob(receiver.url);
    await emulator.advance(150_000 + 59_999);
    expect(receiver.received).toHaveLength(0);
    await emulator.advance(1);
    expect(receiver.received).toHaveLength(1);
  });

  it("wrong secret and stale timestamp: the receiver rejects every attempt; the event is abandoned", async () => {
    const receiver = await verifyingReceiver();
    const { emulator, createJob } = await setup();
    const wrong = await createJob(receiver.url);
    const stale = await createJob(receiver.url);
    emulator.planJob(wrong, { webhook: { wrongSecret: true } });
    emulator.planJob(stale, { webhook: { staleTimestampSec: 600 } });
    await emulator.advance(150_000 + 2_135_000);
    expect(emulator.deliveries({ jobId: wrong })[0]).toMatchObject({ state: "abandoned" });
    expect(
      emulator
        .deliveries({ jobId: wrong })[0]
        ?.attempts.every((a) => a.fault === "wrong-secret" && a.status === 401),
    ).toBe(true);
    expect(
      emulator
        .deliveries({ jobId: stale })[0]
        ?.attempts.every((a) => a.fault === "stale-timestamp" && a.status === 401),
    ).toBe(true);
    expect(new Set(receiver.verdicts)).toEqual(
      new Set(["webhook_signature_invalid", "webhook_signature_stale"]),
    );
    expect(receiver.verdicts).toHaveLength(10);
  });
});

describe("at time scale 0.01 on the real clock", () => {
  it("runs the job in ~1.5 s and retries at 50 ms, then 300 ms, after each failed attempt", async () => {
    const receiver = await verifyingReceiver((n) => (n <= 2 ? 500 : 200));
    emulator = await startMappaEmulator({ secret: SECRET, timeScale: 0.01 });
    const client = createConduitClient({ baseUrl: emulator.url, apiKey: "k" });
    const { mediaId } = await client.upload(new Uint8Array(8), "call");
    const started = performance.now();
    const body = reportBody(mediaId, { webhook: { url: receiver.url } });
    const { jobId } = await client.createReport(body, "scaled-key");
    // an SDK retry of the create (same key, same body) while the job runs: the same receipt
    expect((await client.createReport(body, "scaled-key")).jobId).toBe(jobId);
    expect(emulator.jobs()).toHaveLength(1);
    await until(() => receiver.received.length === 3, 60_000, "three attempts");
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_500 + 50 + 300 - 20);
    const gaps = [1, 2].map(
      (i) => (receiver.received[i]?.at ?? 0) - (receiver.received[i - 1]?.at ?? 0),
    );
    expect(gaps[0]).toBeGreaterThanOrEqual(50 - 5);
    expect(gaps[1]).toBeGreaterThanOrEqual(300 - 5);
    await until(
      () => emulator?.deliveries({ jobId })[0]?.state === "delivered",
      60_000,
      "delivered",
    );
    // emulator-clock times follow the unscaled schedule
    const attempts = emulator.deliveries({ jobId })[0]?.attempts ?? [];
    const at = offsets(attempts.map((a) => a.at));
    expect(at[1]).toBeGreaterThanOrEqual(5_000);
    expect(at[2]).toBeGreaterThanOrEqual(35_000);
    expect((await client.getJob(jobId)).status).toBe("succeeded");
  });
});

describe("load", () => {
  it("keeps at most maxConcurrentWebhooks requests in flight; the rest wait their turn", async () => {
    let inFlight = 0;
    let most = 0;
    let answered = 0;
    const server = createServer((req, res) => {
      inFlight++;
      most = Math.max(most, inFlight);
      req.resume();
      // Hold each answer a little so overlapping requests would show.
      setTimeout(() => {
        inFlight--;
        answered++;
        res.writeHead(200).end("{}");
      }, 100);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/mappa`;
    const { emulator, createJob } = await setup({ maxConcurrentWebhooks: 3 });
    await Promise.all(Array.from({ length: 12 }, () => createJob(url)));
    await emulator.advance(150_000);
    expect(answered).toBe(12);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(3);
    expect(emulator.deliveries().every((d) => d.state === "delivered")).toBe(true);
  });

  it("1,000 jobs created concurrently: every webhook delivered once, records capped", async () => {
    const receiver = await startReceiver();
    cleanups.push(receiver.close);
    const { emulator, client, mediaId } = await setup({ maxJobs: 300, maxDeliveries: 300 });
    const ids = await Promise.all(
      Array.from({ length: 1_000 }, () =>
        client
          .createReport(reportBody(mediaId, { webhook: { url: receiver.url } }))
          .then((r) => r.jobId),
      ),
    );
    expect(new Set(ids).size).toBe(1_000);
    await emulator.advance(150_000);
    expect(receiver.received).toHaveLength(1_000);
    const eventIds = receiver.received.map((r) => JSON.parse(r.body).id as string);
    expect(new Set(eventIds).size).toBe(1_000);
    const jobIds = new Set(receiver.received.map((r) => JSON.parse(r.body).data.jobId as string));
    expect(jobIds).toEqual(new Set(ids));
    expect(emulator.jobs().length).toBeLessThanOrEqual(300);
    expect(emulator.deliveries().length).toBeLessThanOrEqual(300);
    expect(
      emulator.deliveries().every((d) => d.state === "delivered" && d.attempts.length === 1),
    ).toBe(true);
  });
});
