import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import {
  createDeliverySimulator,
  createTestEvent,
  type DeliveryAttempt,
} from "@mappa-webhooks/testing";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Child,
  connect,
  countKeys,
  deleteKeys,
  keyOf,
  SECRET,
  startFixture,
  uniquePrefix,
} from "./helpers.js";

// Two receiver processes share one Redis. 1,000 events, 30% delivered twice (20% at the same
// moment to both instances, 10% again after the first delivery succeeded), and 20% whose first
// handler attempt fails. Every event's effect must be recorded exactly once.
const EVENTS = 1000;
const LANES = 24;
// A bound on the whole run, not a speed target: it only stops a hung run.
const DEADLINE_MS = 180_000;
const prefix = uniquePrefix("soak");
let redis: Redis;
const children: Child[] = [];

beforeAll(async () => {
  redis = connect();
  await redis.ping();
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill()));
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

/** Starts two receiver processes and resolves with their webhook URLs. */
async function startReceivers(runPrefix: string, env: Record<string, string> = {}) {
  const started = ["a", "b"].map((instance) => {
    const child = startFixture("receiver.mjs", {
      PORT: "0",
      MAPPA_WEBHOOK_SECRET: SECRET,
      SOAK_PREFIX: runPrefix,
      INSTANCE: instance,
      ...env,
    });
    children.push(child);
    return child;
  });
  const urls: string[] = [];
  for (const child of started) {
    const [, port] = await child.waitForLine(/^listening on http:\/\/127\.0\.0\.1:(\d+)$/, 30_000);
    urls.push(`http://127.0.0.1:${port}/webhooks/mappa`);
  }
  return urls;
}

type Plan = "once" | "concurrent-duplicate" | "late-duplicate";

function planFor(index: number): Plan {
  const slot = index % 10;
  if (slot === 0 || slot === 1) return "concurrent-duplicate";
  if (slot === 2) return "late-duplicate";
  return "once";
}

/** Sends `count` events to the two receivers as described above; returns what happened. */
async function soak(urls: string[], runPrefix: string, count: number) {
  const events = Array.from({ length: count }, (_, index) =>
    createTestEvent(MAPPA_EVENT_TYPES[index % MAPPA_EVENT_TYPES.length] as string, {
      data: { failFirst: index % 5 === 0 },
    }),
  );
  const attempts: DeliveryAttempt[] = [];
  // Mappa's schedule (0 s, 5 s, 30 s, 5 min, 30 min) at 1/100: 0, 50 ms, 300 ms, 3 s, 18 s.
  // Only 409s and first-attempt 500s are retried, so the later waits only matter on a busy
  // machine, where a first delivery may still be running seconds later.
  const mappa = createDeliverySimulator({
    secret: SECRET,
    timeScale: 0.01,
    timeoutMs: 30_000,
    onAttempt: (attempt) => void attempts.push(attempt),
  });
  let deliveries = 0;
  let abandoned = 0;
  const deliver = async (url: string, event: (typeof events)[number]) => {
    deliveries++;
    const report = await mappa.deliver(url, event);
    if (!report.delivered) abandoned++;
  };

  const started = performance.now();
  let next = 0;
  const lane = async () => {
    // Bounded: each lane takes events until none are left.
    while (next < events.length) {
      const index = next++;
      const event = events[index] as (typeof events)[number];
      const primary = urls[index % 2] as string;
      const other = urls[(index + 1) % 2] as string;
      const plan = planFor(index);
      if (plan === "concurrent-duplicate") {
        await Promise.all([deliver(primary, event), deliver(other, event)]);
      } else {
        await deliver(primary, event);
        if (plan === "late-duplicate") await deliver(other, event);
      }
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all(Array.from({ length: LANES }, lane)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`not done within ${DEADLINE_MS} ms`)), DEADLINE_MS);
    }),
  ]);
  clearTimeout(timer);
  const durationMs = Math.round(performance.now() - started);

  // The effects, counted in Redis.
  const effectKeys = events.map((event) => `${runPrefix}:effect:${keyOf(event)}`);
  const counts = (await redis.mget(...effectKeys)).map((value) => Number(value ?? 0));
  const handledBy = await redis.mget(`${runPrefix}:handled-by:a`, `${runPrefix}:handled-by:b`);
  const byStatus: Record<string, number> = {};
  for (const attempt of attempts) {
    const label = attempt.status === undefined ? (attempt.errorCode ?? "error") : attempt.status;
    byStatus[label] = (byStatus[label] ?? 0) + 1;
  }
  const duplicateAnswers = attempts.filter(
    (a) => a.status === 200 && a.responseBody?.includes('"duplicate":true') === true,
  ).length;
  const inFlightAnswers = byStatus["409"] ?? 0;
  return {
    adapter: process.env.RECEIVER_ADAPTER ?? "express",
    eventsSent: count,
    duplicatedEvents: events.filter((_, index) => planFor(index) !== "once").length,
    deliveries,
    httpRequests: attempts.length,
    answers: byStatus,
    duplicatesSuppressed: duplicateAnswers + inFlightAnswers,
    duplicateAnswers200: duplicateAnswers,
    inFlightAnswers409: inFlightAnswers,
    transientFailures500: byStatus["500"] ?? 0,
    firstAttemptMarkers: await countKeys(redis, `${runPrefix}:first:*`),
    effectsRecorded: counts.filter((n) => n === 1).length,
    missing: counts.filter((n) => n === 0).length,
    doubled: counts.filter((n) => n > 1).length,
    handledByInstance: { a: Number(handledBy[0] ?? 0), b: Number(handledBy[1] ?? 0) },
    abandoned,
    durationMs,
  };
}

describe("soak: two receivers sharing Redis", { timeout: DEADLINE_MS + 60_000 }, () => {
  it("records every event's effect exactly once under duplicates and transient failures", async () => {
    const runPrefix = `${prefix}:redis`;
    const urls = await startReceivers(runPrefix);
    const result = await soak(urls, runPrefix, EVENTS);
    console.log(`[soak] ${JSON.stringify(result)}`);

    expect(result.abandoned).toBe(0);
    expect(result.duplicatedEvents).toBe(300);
    expect(result.deliveries).toBe(EVENTS + 300);
    expect(result.effectsRecorded).toBe(EVENTS);
    expect(result.missing).toBe(0);
    expect(result.doubled).toBe(0);
    expect(result.firstAttemptMarkers).toBe(EVENTS / 5);
    expect(result.transientFailures500).toBe(EVENTS / 5);
    // Each event ends with one "received" answer, each extra delivery with one "duplicate".
    expect(result.answers["200"]).toBe(EVENTS + 300);
    expect(result.duplicateAnswers200).toBe(300);
    expect(result.duplicatesSuppressed).toBeGreaterThanOrEqual(300);
    expect(result.handledByInstance.a + result.handledByInstance.b).toBe(EVENTS);
    expect(result.handledByInstance.a).toBeGreaterThan(0);
    expect(result.handledByInstance.b).toBeGreaterThan(0);
    expect(result.durationMs).toBeLessThan(DEADLINE_MS);
  });

  it("control: with a separate in-memory store per instance, duplicates run twice", async () => {
    const runPrefix = `${prefix}:memory`;
    const urls = await startReceivers(runPrefix, { IDEMPOTENCY: "memory" });
    const result = await soak(urls, runPrefix, 200);
    console.log(`[soak-control] ${JSON.stringify(result)}`);
    expect(result.missing).toBe(0);
    // Every late duplicate reaches the other instance, which has never seen the event.
    expect(result.doubled).toBeGreaterThanOrEqual(20);
  });
});
