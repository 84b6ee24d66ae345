import { parseEvent } from "@mappa-webhooks/core";
import { createTestEvent, signPayload, simulateDelivery } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInbox } from "../src/index.js";
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

let db: TestDatabase;
const children: Child[] = [];

beforeAll(async () => {
  db = await createTestDatabase("crash");
  await db.pool.query(
    `CREATE TABLE "${db.schema}".effects (id serial PRIMARY KEY, event_key text NOT NULL, worker text NOT NULL)`,
  );
  await db.pool.query(
    `CREATE TABLE "${db.schema}".first_attempts (key text PRIMARY KEY, worker text NOT NULL)`,
  );
});

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await db.drop();
});

const env = () => ({ MAPPA_WEBHOOK_SECRET: SECRET, SCHEMA: db.schema, PORT: "0" });

function start(script: string, extra: Record<string, string>): Child {
  const child = startFixture(script, { ...env(), ...extra });
  children.push(child);
  return child;
}

async function effectsPerKey(keys: string[]): Promise<Map<string, string[]>> {
  const result = await db.pool.query(
    `SELECT event_key, worker FROM "${db.schema}".effects WHERE event_key = ANY($1) ORDER BY id`,
    [keys],
  );
  const map = new Map<string, string[]>(keys.map((key) => [key, []]));
  for (const row of result.rows) map.get(row.event_key)?.push(row.worker);
  return map;
}

async function statusOf(keys: string[]): Promise<Record<string, number>> {
  const result = await db.pool.query(
    `SELECT status, count(*)::int AS n FROM "${db.schema}".events WHERE key = ANY($1) GROUP BY status`,
    [keys],
  );
  return Object.fromEntries(result.rows.map((row) => [row.status, row.n]));
}

describe("crash: a worker killed after its handler wrote, before the commit", () => {
  it("loses and doubles nothing: the writes roll back and another worker handles each event once", async () => {
    const JOBS = 5;
    const inbox = createInbox({ pool: db.pool, schema: db.schema });
    const events = Array.from({ length: JOBS }, () => {
      const base = createTestEvent("report.completed");
      return parseEvent(JSON.stringify({ ...base, data: { ...base.data, stallOn: "doomed" } }));
    });
    const keys = events.map((event) => event.idempotencyKey as string);
    for (const event of events) await inbox.store(event);

    const doomed = start("worker.mjs", { INSTANCE: "doomed", CONCURRENCY: String(JOBS) });
    for (const key of keys) await doomed.waitForLine(new RegExp(`^wrote ${key}$`), 30_000);
    // Written, not committed: nobody sees the effects, every event is still pending.
    const before = await effectsPerKey(keys);
    expect([...before.values()].flat()).toEqual([]);
    expect(await statusOf(keys)).toEqual({ pending: JOBS });

    const killedAt = performance.now();
    await doomed.kill("SIGKILL");
    const rescuer = start("worker.mjs", { INSTANCE: "rescuer" });
    await rescuer.waitForLine(/^worker ready \d+$/, 30_000);
    await waitFor(async () => (await statusOf(keys)).done === JOBS, 30_000, 25);
    const recoveryMs = Math.round(performance.now() - killedAt);

    const after = await effectsPerKey(keys);
    const attempts = await db.pool.query(
      `SELECT attempts FROM "${db.schema}".events WHERE key = ANY($1)`,
      [keys],
    );
    const summary = {
      events: JOBS,
      writtenByKilledWorkerBeforeKill: JOBS,
      visibleBeforeKill: 0,
      effectsRecorded: [...after.values()].filter((workers) => workers.length === 1).length,
      doubled: [...after.values()].filter((workers) => workers.length > 1).length,
      handledBy: [...new Set([...after.values()].flat())],
      attempts: attempts.rows.map((row: { attempts: number }) => row.attempts),
      recoveryMs,
    };
    console.log(`[crash-worker] ${JSON.stringify(summary)}`);
    expect([...after.values()]).toEqual(Array(JOBS).fill(["rescuer"]));
    // The killed attempt counts (it was recorded when the event was taken, before the handler
    // ran), so an event that keeps killing its worker is parked instead of looping; the
    // rolled-back transaction left nothing else behind.
    expect(summary.attempts).toEqual(Array(JOBS).fill(2));
    expect(recoveryMs).toBeLessThan(60_000);
    await rescuer.kill();
  });
});

describe("crash: a receiver killed mid-insert and with deliveries in flight", () => {
  it("loses nothing: every acknowledged event was stored, the rest arrive through Mappa's retries, each handled once", async () => {
    const doomed = start("receiver.mjs", { INSTANCE: "doomed" });
    const survivor = start("receiver.mjs", { INSTANCE: "survivor" });
    const doomedUrl = await webhookUrlOf(doomed);
    const survivorUrl = await webhookUrlOf(survivor);

    // 20 events acknowledged by the receiver that is about to die.
    const acknowledged = Array.from({ length: 20 }, () => createTestEvent("matching.completed"));
    for (const event of acknowledged) {
      const report = await simulateDelivery(doomedUrl, event, { secret: SECRET, schedule: [0] });
      expect(report.attempts[0]?.status).toBe(200);
    }

    // One delivery held mid-insert: another transaction holds the same key uncommitted, so the
    // receiver's INSERT waits on it when the process is killed.
    const interrupted = createTestEvent("report.completed");
    const blocker = await db.pool.connect();
    await blocker.query("BEGIN");
    await blocker.query(
      `INSERT INTO "${db.schema}".events (key, type, payload) VALUES ($1, 'blocker', '{}')`,
      [keyOf(interrupted)],
    );
    const post = async (event: object) => {
      const body = JSON.stringify(event);
      return fetch(doomedUrl, {
        method: "POST",
        body,
        headers: { "mappa-signature": await signPayload({ payload: body, secret: SECRET }) },
      }).then(
        (response) => response.status,
        () => "network error",
      );
    };
    const interruptedAnswer = post(interrupted);
    await waitFor(async () => {
      const waiting = await db.pool.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO%' AND query LIKE $1`,
        [`%${db.schema}%`],
      );
      return waiting.rows[0].n > 0;
    }, 20_000);

    // And a burst in flight at the moment of the kill.
    const burst = Array.from({ length: 30 }, () => createTestEvent("report.failed"));
    let answered = 0;
    const burstAnswers = burst.map((event) =>
      post(event).then((status) => {
        answered++;
        return status;
      }),
    );
    // Killed once some of the burst was answered, with the rest still on the wire.
    await waitFor(() => answered >= 5, 20_000, 1);
    const killedAt = performance.now();
    await doomed.kill("SIGKILL");
    await blocker.query("ROLLBACK");
    blocker.release();
    expect(await interruptedAnswer).toBe("network error");
    const answers = await Promise.all(burstAnswers);
    const ackedInBurst = burst.filter((_, index) => answers[index] === 200);

    // Nothing acknowledged is lost: every 200 is a stored row, right after the kill.
    const ackedKeys = [...acknowledged, ...ackedInBurst].map((event) => keyOf(event));
    const storedAfterKill = await statusOf(ackedKeys);
    expect(storedAfterKill).toEqual({ pending: ackedKeys.length });

    // Mappa retries what was not acknowledged; the retries reach the surviving instance.
    const unacked = [interrupted, ...burst.filter((_, index) => answers[index] !== 200)];
    const retries = await Promise.all(
      unacked.map((event) =>
        simulateDelivery(survivorUrl, event, { secret: SECRET, timeScale: 0.001 }),
      ),
    );
    expect(retries.every((report) => report.delivered)).toBe(true);
    const all = [...acknowledged, interrupted, ...burst];
    const allKeys = all.map((event) => keyOf(event));
    expect(await statusOf(allKeys)).toEqual({ pending: all.length });

    const worker = start("worker.mjs", { INSTANCE: "after-crash" });
    await worker.waitForLine(/^worker ready \d+$/, 30_000);
    await waitFor(async () => (await statusOf(allKeys)).done === all.length, 30_000, 25);
    const recoveryMs = Math.round(performance.now() - killedAt);
    const effects = await effectsPerKey(allKeys);
    const summary = {
      acknowledgedBeforeKill: acknowledged.length,
      interruptedMidInsert: 1,
      burstInFlight: burst.length,
      burstAcknowledged: ackedInBurst.length,
      retriedThroughSurvivor: unacked.length,
      retryAnswers: retries
        .map((report) =>
          report.attempts.at(-1)?.responseBody?.includes("duplicate")
            ? "200 duplicate"
            : String(report.attempts.at(-1)?.status),
        )
        .reduce<Record<string, number>>((acc, label) => {
          acc[label] = (acc[label] ?? 0) + 1;
          return acc;
        }, {}),
      stored: all.length,
      effectsRecorded: [...effects.values()].filter((workers) => workers.length === 1).length,
      doubled: [...effects.values()].filter((workers) => workers.length > 1).length,
      missing: [...effects.values()].filter((workers) => workers.length === 0).length,
      recoveryMs,
    };
    console.log(`[crash-receiver] ${JSON.stringify(summary)}`);
    expect(summary.effectsRecorded).toBe(all.length);
    expect(summary.doubled).toBe(0);
    expect(summary.missing).toBe(0);
  });
});
