import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createMappaWebhooks, readBodyWithLimit, verifySignature } from "@mappa-webhooks/core";
import { afterAll, describe, expect, it } from "vitest";
import {
  createDeliverySimulator,
  createTestEvent,
  type DeliveryAttempt,
  MAPPA_RETRY_SCHEDULE_MS,
  simulateDelivery,
} from "../src/index.js";
import { freePort, startServer, type TestServer } from "./server.js";

const secret = "whsec_simulator";
const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
});

async function server(answer: Parameters<typeof startServer>[0]): Promise<TestServer> {
  const started = await startServer(answer);
  servers.push(started);
  return started;
}

const CUMULATIVE = [0, 5_000, 35_000, 335_000, 2_135_000];

describe("simulateDelivery", () => {
  it("uses Mappa's schedule: immediately, then 5 s, 30 s, 5 min, 30 min", () => {
    expect(MAPPA_RETRY_SCHEDULE_MS).toEqual([0, 5_000, 30_000, 300_000, 1_800_000]);
    expect(Object.isFrozen(MAPPA_RETRY_SCHEDULE_MS)).toBe(true);
  });

  it("delivers on the first attempt when the receiver answers 2xx", async () => {
    const target = await server(() => 204);
    const event = createTestEvent("report.completed");
    const report = await simulateDelivery(target.url, event, { secret });
    expect(report).toMatchObject({
      delivered: true,
      abandoned: false,
      body: JSON.stringify(event),
    });
    expect(report.attempts).toHaveLength(1);
    expect(report.attempts[0]).toMatchObject({
      attempt: 1,
      status: 204,
      ok: true,
      scheduledAtMs: 0,
    });
    expect(target.received[0]?.headers["content-type"]).toBe("application/json");
    expect(target.received[0]?.headers["user-agent"]).toBe("mappa-webhooks-simulator");
  });

  it("retries on non-2xx with the time-scaled schedule and the same body, freshly signed", async () => {
    const verified: number[] = [];
    const target = await server(async (index, request) => {
      const result = await verifySignature({
        payload: request.body,
        headers: request.headers,
        secret,
      });
      verified.push(result.timestamp);
      return index < 2 ? ([500, 503][index] as number) : 200;
    });
    const event = createTestEvent("report.failed");
    const report = await simulateDelivery(target.url, event, { secret, timeScale: 0.001 });

    expect(report.delivered).toBe(true);
    expect(report.attempts.map((a) => a.status)).toEqual([500, 503, 200]);
    expect(report.attempts.map((a) => a.scheduledAtMs)).toEqual([0, 5_000, 35_000]);
    expect(report.attempts.map((a) => a.responseBody)).toEqual([
      '{"attempt":1}',
      '{"attempt":2}',
      '{"attempt":3}',
    ]);
    expect(new Set(target.received.map((r) => r.body))).toEqual(new Set([JSON.stringify(event)]));
    expect(verified).toHaveLength(3);
    const [first, second, third] = target.received.map((r) => r.at) as [number, number, number];
    // 5 s and 30 s scaled by 0.001 (timers may fire a millisecond early)
    expect(second - first).toBeGreaterThanOrEqual(4);
    expect(third - second).toBeGreaterThanOrEqual(29);
    expect(report.durationMs).toBeLessThan(10_000); // not the 35 s of the real schedule
  });

  it("signs every attempt at send time on the real clock, even when time-scaled", async () => {
    const target = await server((index) => (index === 0 ? 500 : 200));
    const report = await simulateDelivery(target.url, createTestEvent("matching.completed"), {
      secret,
      schedule: [0, 1_100_000],
      timeScale: 0.001, // 1 100 s of Mappa time → 1.1 s
    });
    const [first, second] = target.received.map((r) => r.headers["mappa-signature"]);
    expect(first).not.toBe(second);
    const [t1, t2] = report.attempts.map((a) => a.signatureTimestamp) as [number, number];
    expect(t2 - t1).toBeGreaterThanOrEqual(1);
    expect(Math.abs(t2 - Math.floor(Date.now() / 1000))).toBeLessThanOrEqual(1);
    expect(second).toMatch(new RegExp(`^t=${t2},v1=`));
  });

  it("abandons after five failed attempts, at the cumulative schedule", async () => {
    const target = await server(() => 500);
    const seen: DeliveryAttempt[] = [];
    const waits: number[] = [];
    const report = await simulateDelivery(target.url, createTestEvent("report.completed"), {
      secret,
      timeScale: 0.001,
      onAttempt: (attempt) => seen.push(attempt),
      onRetryScheduled: ({ scaledDelayMs }) => waits.push(scaledDelayMs),
    });
    expect(report).toMatchObject({ delivered: false, abandoned: true });
    expect(report.attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4, 5]);
    expect(report.attempts.map((a) => a.status)).toEqual([500, 500, 500, 500, 500]);
    expect(report.attempts.map((a) => a.scheduledAtMs)).toEqual(CUMULATIVE);
    expect(seen).toEqual(report.attempts);
    expect(waits).toEqual([5, 30, 300, 1_800]);
    expect(target.received).toHaveLength(5);
    // 2 135 ms of scaled waiting in total
    expect(report.durationMs).toBeGreaterThanOrEqual(2_120);
    expect(report.durationMs).toBeLessThan(15_000); // not 36 minutes
    const sent = report.attempts.map((a) => a.sentAtMs);
    expect((sent[4] as number) - (sent[3] as number)).toBeGreaterThanOrEqual(1_795);
  });

  it("treats a refused connection as a failed attempt and keeps retrying", async () => {
    const port = await freePort();
    const report = await simulateDelivery(
      `http://127.0.0.1:${port}/webhooks/mappa`,
      createTestEvent("report.completed"),
      {
        secret,
        timeScale: 0.0001,
      },
    );
    expect(report).toMatchObject({ delivered: false, abandoned: true });
    expect(report.attempts).toHaveLength(5);
    for (const attempt of report.attempts) {
      expect(attempt.status).toBeUndefined();
      expect(attempt.ok).toBe(false);
      expect(attempt.errorCode).toBe("ECONNREFUSED");
      expect(attempt.error).toMatch(/ECONNREFUSED/);
    }
  });

  it("recovers when the receiver comes back during the retries", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/webhooks/mappa`;
    const handled: string[] = [];
    const webhooks = createMappaWebhooks({
      secret,
      on: { "report.completed": (event) => void handled.push(event.id ?? "") },
    });
    const receiver = createServer(async (req, res) => {
      const result = await webhooks.handle({
        method: req.method ?? "GET",
        headers: req.headers,
        rawBody: await readBodyWithLimit(req),
      });
      res.writeHead(result.status, result.headers).end(result.body);
    });
    let restarted: Promise<unknown> | undefined;
    const event = createTestEvent("report.completed");
    const report = await simulateDelivery(url, event, {
      secret,
      timeScale: 0.01, // 5 s → 50 ms, 30 s → 300 ms, 5 min → 3 s
      onAttempt: (attempt) => {
        if (attempt.attempt === 2)
          restarted = once(receiver.listen(port, "127.0.0.1"), "listening");
      },
    });
    await restarted;
    receiver.closeAllConnections();
    receiver.close();
    expect(report.delivered).toBe(true);
    expect(report.attempts.map((a) => a.errorCode ?? a.status)).toEqual([
      "ECONNREFUSED",
      "ECONNREFUSED",
      200,
    ]);
    expect(handled).toEqual([event.id]);
  });

  it("gives up on an attempt after timeoutMs and retries", async () => {
    const target = await server(() => "hang");
    const report = await simulateDelivery(target.url, createTestEvent("report.completed"), {
      secret,
      schedule: [0, 0],
      timeoutMs: 150,
    });
    expect(report.abandoned).toBe(true);
    expect(report.attempts.map((a) => a.errorCode)).toEqual(["TIMEOUT", "TIMEOUT"]);
    for (const attempt of report.attempts) {
      expect(attempt.latencyMs).toBeGreaterThanOrEqual(140);
      expect(attempt.latencyMs).toBeLessThan(2_000);
      expect(attempt.error).toBe("no complete answer within 150 ms");
    }
  });

  it("does not follow redirects: a 3xx is a failed attempt", async () => {
    const target = await server(() => 302);
    const report = await simulateDelivery(target.url, createTestEvent("report.completed"), {
      secret,
      schedule: [0],
    });
    expect(report).toMatchObject({ delivered: false, abandoned: true });
    expect(report.attempts[0]?.status).toBe(302);
  });

  it("reports the attempt lifecycle in order", async () => {
    const target = await server((index) => (index === 0 ? 500 : 200));
    const log: string[] = [];
    await simulateDelivery(target.url, createTestEvent("report.completed"), {
      secret,
      timeScale: 0,
      onAttemptStart: ({ attempt, maxAttempts }) => log.push(`start ${attempt}/${maxAttempts}`),
      onAttempt: ({ attempt, status }) => log.push(`done ${attempt} ${status}`),
      onRetryScheduled: ({ attempt, delayMs }) => log.push(`wait ${delayMs} for ${attempt}`),
    });
    expect(log).toEqual(["start 1/5", "done 1 500", "wait 5000 for 2", "start 2/5", "done 2 200"]);
  });

  it("sends extra headers and uses a custom header name and fetch", async () => {
    const target = await server(() => 200);
    const urls: string[] = [];
    const report = await simulateDelivery(target.url, '{"raw":true}', {
      secret,
      headerName: "conduit-signature",
      headers: { "x-test": "1" },
      fetch: (input, init) => {
        urls.push(String(input));
        return fetch(input, init);
      },
    });
    expect(report.delivered).toBe(true);
    expect(urls).toEqual([target.url]);
    const headers = target.received[0]?.headers ?? {};
    expect(headers["x-test"]).toBe("1");
    expect(headers["conduit-signature"]).toMatch(/^t=\d+,v1=/);
    expect(headers["mappa-signature"]).toBeUndefined();
    expect(target.received[0]?.body).toBe('{"raw":true}');
  });

  it("rejects bad options before sending anything", async () => {
    const event = createTestEvent("report.completed");
    const url = "http://127.0.0.1:9/x";
    await expect(simulateDelivery(url, event, { secret: "" })).rejects.toThrow(/secret/);
    await expect(simulateDelivery(url, event, { secret, schedule: [] })).rejects.toThrow(
      /schedule/,
    );
    await expect(simulateDelivery(url, event, { secret, schedule: [-1] })).rejects.toThrow(
      /schedule/,
    );
    await expect(simulateDelivery(url, event, { secret, timeScale: -1 })).rejects.toThrow(
      /timeScale/,
    );
    await expect(simulateDelivery(url, event, { secret, timeoutMs: 0 })).rejects.toThrow(
      /timeoutMs/,
    );
    await expect(simulateDelivery("not a url", event, { secret })).rejects.toThrow(/absolute URL/);
    await expect(simulateDelivery("ftp://x/y", event, { secret })).rejects.toThrow(/http\(s\)/);
  });
});

describe("createDeliverySimulator", () => {
  it("shares defaults and lets each delivery override them", async () => {
    const target = await server(() => 500);
    const mappa = createDeliverySimulator({ secret, timeScale: 0 });
    const full = await mappa.deliver(target.url, createTestEvent("report.completed"));
    expect(full.attempts).toHaveLength(5);
    const once = await mappa.deliver(target.url, createTestEvent("report.completed"), {
      schedule: [0],
    });
    expect(once.attempts).toHaveLength(1);
    expect(() => createDeliverySimulator({ secret: "" })).toThrow(/secret/);
  });
});

describe("loopback address", () => {
  it("binds test servers to 127.0.0.1", async () => {
    const target = await server(() => 200);
    expect(new URL(target.url).hostname).toBe("127.0.0.1");
    const probe = createServer();
    probe.listen(0, "127.0.0.1");
    await once(probe, "listening");
    expect((probe.address() as AddressInfo).address).toBe("127.0.0.1");
    probe.close();
  });
});
