import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import {
  createDeliverySimulator,
  createTestEvent,
  type DeliveryAttempt,
} from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Child,
  createTestDatabase,
  keyOf,
  SECRET,
  startFixture,
  type TestDatabase,
  waitFor,
  webhookUrlOf,
} from "./helpers.js";

// Two inbox receiver processes and two worker processes share one database. 1,000 events are
// delivered concurrently, 30% of them twice (20% at the same moment to both receivers, 10%
// again after the first delivery was answered), and 20% fail their first handler attempt.
// Every event's effect (a row its handler writes in the event's transaction) must exist
// exactly once, and nothing may be left pending or failed.
const EVENTS = 1000;
const LANES = 24;
const DELIVERY_DEADLINE_MS = 120_000;
const DRAIN_DEADLINE_MS = 120_000;
let db: TestDatabase;
const children: Child[] = [];

beforeAll(async () => {
  db = await createTestDatabase("soak");
  await db.pool.query(
    `CREATE TABLE "${db.schema}".effects (id serial PRIMARY KEY, event_key text NOT NULL, worker text NOT NULL)`,
  );
  await db.pool.query(
    `CREATE TABLE "${db.schema}".first_attempts (key text PRIMARY KEY, worker text NOT NULL)`,
  );
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill()));
  await db.drop();
});

type Plan = "once" | "concurrent-duplicate" | "late-duplicate";

function planFor(index: number): Plan {
  const slot = index % 10;
  if (slot === 0 || slot === 1) return "concurrent-duplicate";
  if (slot === 2) return "late-duplicate";
  return "once";
}

describe("soak: two inbox receivers and two workers on one database", () => {
  it("records every event's effect exactly once under duplicates and transient failures", async () => {
    const env = { MAPPA_WEBHOOK_SECRET: SECRET, SCHEMA: db.schema, PORT: "0" };
    const receivers = ["a", "b"].map((instance) =>
      startFixture("receiver.mjs", { ...env, INSTANCE: instance }),
    );
    const workers = ["w1", "w2"].map((instance) =>
      startFixture("worker.mjs", { ...env, INSTANCE: instance, CONCURRENCY: "4" }),
    );
    children.push(...receivers, ...workers);
    const urls = [
      await webhookUrlOf(receivers[0] as Child),
      await webhookUrlOf(receivers[1] as Child),
    ];
    for (const worker of workers) await worker.waitForLine(/^worker ready \d+$/, 30_000);

    const events = Array.from({ length: EVENTS }, (_, index) =>
      createTestEvent(MAPPA_EVENT_TYPES[index % MAPPA_EVENT_TYPES.length] as string, {
        data: { failFirst: index % 5 === 0 },
      }),
    );
    const attempts: DeliveryAttempt[] = [];
    // Mappa's schedule at 1/500 (0, 10, 60, 600, 3600 ms): only errors are retried.
    const mappa = createDeliverySimulator({
      secret: SECRET,
      timeScale: 0.002,
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
        timer = setTimeout(
          () => reject(new Error(`deliveries not done within ${DELIVERY_DEADLINE_MS} ms`)),
          DELIVERY_DEADLINE_MS,
        );
      }),
    ]);
    clearTimeout(timer);
    const receivedMs = Math.round(performance.now() - started);

    const countByStatus = async () => {
      const result = await db.pool.query(
        `SELECT status, count(*)::int AS n FROM "${db.schema}".events GROUP BY status`,
      );
      const counts: Record<string, number> = { pending: 0, done: 0, failed: 0 };
      for (const row of result.rows) counts[row.status] = row.n;
      return counts;
    };
    await waitFor(async () => (await countByStatus()).done === EVENTS, DRAIN_DEADLINE_MS, 100);
    const drainedMs = Math.round(performance.now() - started);

    const keys = events.map((event) => keyOf(event));
    const perKey = await db.pool.query(
      `SELECT k AS key, count(e.id)::int AS n
         FROM unnest($1::text[]) AS k LEFT JOIN "${db.schema}".effects e ON e.event_key = k
        GROUP BY k`,
      [keys],
    );
    const counts = perKey.rows.map((row: { n: number }) => row.n);
    const byWorker = await db.pool.query(
      `SELECT worker, count(*)::int AS n FROM "${db.schema}".effects GROUP BY worker ORDER BY worker`,
    );
    const attemptsHistogram = await db.pool.query(
      `SELECT attempts, count(*)::int AS n FROM "${db.schema}".events GROUP BY attempts ORDER BY attempts`,
    );
    const firstAttempts = await db.pool.query(
      `SELECT count(*)::int AS n FROM "${db.schema}".first_attempts`,
    );
    const answers: Record<string, number> = {};
    for (const attempt of attempts) {
      const label =
        attempt.status === undefined ? (attempt.errorCode ?? "error") : String(attempt.status);
      answers[label] = (answers[label] ?? 0) + 1;
    }
    const duplicateAnswers = attempts.filter(
      (a) => a.status === 200 && a.responseBody?.includes('"duplicate":true') === true,
    ).length;
    const status = await countByStatus();
    const result = {
      eventsSent: EVENTS,
      duplicatedEvents: events.filter((_, index) => planFor(index) !== "once").length,
      deliveries,
      httpRequests: attempts.length,
      answers,
      duplicateAnswers200: duplicateAnswers,
      handlersFailingOnce: firstAttempts.rows[0].n,
      attempts: Object.fromEntries(attemptsHistogram.rows.map((row) => [row.attempts, row.n])),
      effectsRecorded: counts.filter((n: number) => n === 1).length,
      missing: counts.filter((n: number) => n === 0).length,
      doubled: counts.filter((n: number) => n > 1).length,
      effectsByWorker: Object.fromEntries(byWorker.rows.map((row) => [row.worker, row.n])),
      pending: status.pending,
      failed: status.failed,
      abandoned,
      receivedMs,
      drainedMs,
    };
    console.log(`[soak] ${JSON.stringify(result)}`);

    expect(result.abandoned).toBe(0);
    expect(result.duplicatedEvents).toBe(300);
    expect(result.deliveries).toBe(EVENTS + 300);
    // Every delivery is acknowledged at once: stored, or recognised as stored.
    expect(result.answers).toEqual({ "200": EVENTS + 300 });
    // Late duplicates always find the row; concurrent ones may both insert-or-skip.
    expect(result.duplicateAnswers200).toBeGreaterThanOrEqual(100);
    expect(result.duplicateAnswers200).toBeLessThanOrEqual(300);
    expect(result.effectsRecorded).toBe(EVENTS);
    expect(result.missing).toBe(0);
    expect(result.doubled).toBe(0);
    expect(result.handlersFailingOnce).toBe(EVENTS / 5);
    expect(result.attempts).toEqual({ 1: EVENTS - EVENTS / 5, 2: EVENTS / 5 });
    expect(result.pending).toBe(0);
    expect(result.failed).toBe(0);
    expect(result.effectsByWorker.w1).toBeGreaterThan(0);
    expect(result.effectsByWorker.w2).toBeGreaterThan(0);
  });
});
