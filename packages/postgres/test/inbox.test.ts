import { parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  countEvents,
  createInbox,
  createInboxWorker,
  getEvent,
  type InboxWorker,
  type InboxWorkerErrorInfo,
  listFailed,
  prune,
  replayFailed,
} from "../src/index.js";
import {
  createPool,
  createTestDatabase,
  deliver,
  keyOf,
  SECRET,
  type TestDatabase,
  waitFor,
} from "./helpers.js";
import { type AdapterName, startReceiver } from "./receivers.js";

let db: TestDatabase;
let effects: string;
const workers: InboxWorker[] = [];

beforeAll(async () => {
  db = await createTestDatabase("inbox", { pool: { max: 20 } });
  effects = `"${db.schema}".effects`;
  await db.pool.query(
    `CREATE TABLE ${effects} (id serial PRIMARY KEY, event_key text NOT NULL, worker text)`,
  );
});

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.close()));
  await db.drop();
});

const admin = () => ({ pool: db.pool, schema: db.schema });

async function effectCount(key: string): Promise<number> {
  const result = await db.pool.query(
    `SELECT count(*)::int AS n FROM ${effects} WHERE event_key = $1`,
    [key],
  );
  return result.rows[0].n;
}

/** A worker whose handlers write one effect row per event, in the event's transaction. */
function startWorker(
  options: Partial<Parameters<typeof createInboxWorker<pg.Pool>>[0]> & { name?: string } = {},
): InboxWorker {
  const name = options.name ?? "w";
  const write = async (event: { idempotencyKey?: string | undefined }, client: pg.PoolClient) => {
    await client.query(`INSERT INTO ${effects} (event_key, worker) VALUES ($1, $2)`, [
      event.idempotencyKey,
      name,
    ]);
  };
  const worker = createInboxWorker({
    pool: db.pool,
    schema: db.schema,
    pollIntervalMs: 100,
    on: {
      "report.completed": write,
      "report.failed": write,
      "matching.completed": write,
      "matching.failed": write,
    },
    ...options,
  });
  workers.push(worker);
  return worker;
}

describe.each<AdapterName>(["express", "fastify", "hono"])("inbox receiving on %s", (adapter) => {
  it("stores the event and answers 200 before any handler ran; a re-delivery is a duplicate", async () => {
    const inbox = createInbox({ pool: db.pool, schema: db.schema });
    const receiver = await startReceiver(adapter, { secret: SECRET, ...inbox.receiverOptions });
    try {
      const event = createTestEvent("report.completed");
      expect(await deliver(receiver.url, event)).toEqual({ status: 200, body: { received: true } });
      const stored = await inbox.get(keyOf(event));
      expect(stored).toMatchObject({ status: "pending", attempts: 0, type: "report.completed" });
      expect(stored?.payload).toEqual(event);
      expect(await deliver(receiver.url, event)).toEqual({
        status: 200,
        body: { received: true, duplicate: true },
      });
      // Concurrent first deliveries of another event: all 200, one row.
      const other = createTestEvent("matching.failed");
      const answers = await Promise.all([1, 2, 3, 4, 5].map(() => deliver(receiver.url, other)));
      expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200, 200]);
      const rows = await db.pool.query(
        `SELECT count(*)::int AS n FROM "${db.schema}".events WHERE key = $1`,
        [keyOf(other)],
      );
      expect(rows.rows[0].n).toBe(1);
      // Still answered 401 for a forged delivery: nothing stored.
      const forged = await deliver(
        receiver.url,
        createTestEvent("report.completed"),
        "whsec_wrong",
      );
      expect(forged.status).toBe(401);
    } finally {
      await receiver.close();
    }
  });
});

describe("inbox store given the event at claim time", () => {
  it("stores in the claim itself: one statement decides stored or duplicate, the handler adds nothing", async () => {
    const inbox = createInbox({ pool: db.pool, schema: db.schema });
    const { idempotency, on } = inbox.receiverOptions;
    const event = parseEvent(JSON.stringify(createTestEvent("report.completed")));
    const key = event.idempotencyKey as string;
    const claimWithEvent = (options: { leaseMs: number; event: typeof event }) =>
      idempotency.claim(key, options);
    // `stored`: the claim itself stored the event, so the delivery's outcome is `stored`.
    expect(await claimWithEvent({ leaseMs: 1000, event })).toEqual({
      status: "claimed",
      token: key,
      stored: true,
    });
    expect(await inbox.get(key)).toMatchObject({ status: "pending" });
    await on["report.completed"]?.(event as never, undefined);
    await idempotency.complete(key, key, { ttlMs: 1000 });
    expect(await claimWithEvent({ leaseMs: 1000, event })).toEqual({ status: "completed" });
    const rows = await db.pool.query(
      `SELECT count(*)::int AS n FROM "${db.schema}".events WHERE key = $1`,
      [key],
    );
    expect(rows.rows[0].n).toBe(1);
  });
});

describe("inbox workers", () => {
  it("run the typed handler in the event's transaction, woken by NOTIFY", async () => {
    const inbox = createInbox({ pool: db.pool, schema: db.schema });
    // Polling once a minute: only NOTIFY can wake it within the wait below.
    const worker = startWorker({ pollIntervalMs: 60_000 });
    await worker.ready;
    const receiver = await startReceiver("express", { secret: SECRET, ...inbox.receiverOptions });
    try {
      const event = createTestEvent("report.completed");
      expect((await deliver(receiver.url, event)).status).toBe(200);
      await waitFor(async () => (await inbox.get(keyOf(event)))?.status === "done", 20_000);
      expect(await effectCount(keyOf(event))).toBe(1);
      expect(await inbox.get(keyOf(event))).toMatchObject({ attempts: 1, lastError: null });
    } finally {
      await receiver.close();
      await worker.close();
    }
  });

  it("fall back to polling without LISTEN", async () => {
    const inbox = createInbox({ pool: db.pool, schema: db.schema, notify: false });
    const worker = startWorker({ listen: false, pollIntervalMs: 50 });
    const event = parseEvent(JSON.stringify(createTestEvent("matching.completed")));
    expect(await inbox.store(event)).toBe(true);
    expect(await inbox.store(event)).toBe(false);
    await waitFor(async () => (await inbox.get(keyOf(event)))?.status === "done", 20_000);
    expect(await effectCount(keyOf(event))).toBe(1);
    await worker.close();
  });

  it("retry a failing handler with backoff, rolling back its writes, then park it as failed; replay runs it again", async () => {
    const inbox = createInbox({ pool: db.pool, schema: db.schema });
    let broken = true;
    const outcomes: InboxWorkerErrorInfo["outcome"][] = [];
    const worker = createInboxWorker({
      pool: db.pool,
      schema: db.schema,
      pollIntervalMs: 50,
      maxAttempts: 3,
      backoff: () => 20,
      onError: (_error, info) => void outcomes.push(info.outcome),
      on: {
        "report.failed": async (event, client) => {
          await client.query(`INSERT INTO ${effects} (event_key, worker) VALUES ($1, 'w')`, [
            event.idempotencyKey,
          ]);
          if (broken) throw new Error(`cannot handle ${event.data.error.code} yet`);
        },
      },
    });
    workers.push(worker);
    const event = parseEvent(JSON.stringify(createTestEvent("report.failed")));
    const key = event.idempotencyKey as string;
    await inbox.store(event);
    await waitFor(async () => (await inbox.get(key))?.status === "failed", 20_000);
    expect(outcomes).toEqual(["retry", "retry", "failed"]);
    expect(worker.stats).toMatchObject({ done: 0, retried: 2, failed: 1 });
    expect(await effectCount(key)).toBe(0);
    const failed = await listFailed(admin());
    expect(failed.map((row) => row.key)).toContain(key);
    expect(failed.find((row) => row.key === key)).toMatchObject({
      attempts: 3,
      lastError: "cannot handle target_not_found yet",
      type: "report.failed",
    });

    broken = false;
    expect(await replayFailed({ ...admin(), keys: [key, "evt_not_there"] })).toEqual({
      replayed: [key],
      notFailed: ["evt_not_there"],
    });
    await waitFor(async () => (await inbox.get(key))?.status === "done", 20_000);
    expect(await effectCount(key)).toBe(1);
    expect(await inbox.get(key)).toMatchObject({ attempts: 1, lastError: null });
    // Replaying a done event does nothing.
    expect((await inbox.replay({ keys: [key] })).replayed).toEqual([]);
    await worker.close();
  });

  it("schedule the next attempt after the backoff, by the database's clock", async () => {
    const inbox = createInbox({ pool: db.pool, schema: db.schema });
    const worker = createInboxWorker({
      pool: db.pool,
      schema: db.schema,
      pollIntervalMs: 50,
      backoff: (attempt) => attempt * 60_000,
      on: {
        "matching.failed": () => {
          throw new Error("not yet");
        },
      },
    });
    workers.push(worker);
    const event = parseEvent(JSON.stringify(createTestEvent("matching.failed")));
    await inbox.store(event);
    // The attempt counts from the moment it starts; its outcome follows.
    await waitFor(async () => (await inbox.get(keyOf(event)))?.lastError === "not yet", 20_000);
    const row = await db.pool.query(
      `SELECT status, extract(epoch FROM run_at - updated_at) AS wait_s
         FROM "${db.schema}".events WHERE key = $1`,
      [keyOf(event)],
    );
    expect(row.rows[0].status).toBe("pending");
    expect(Number(row.rows[0].wait_s)).toBeCloseTo(60, 0);
    await worker.close();
    expect((await inbox.get(keyOf(event)))?.attempts).toBe(1);
  });

  it("share the events between workers: each handled once", async () => {
    const inbox = createInbox({ pool: db.pool, schema: db.schema });
    const events = Array.from({ length: 120 }, (_, index) =>
      parseEvent(
        JSON.stringify(
          createTestEvent(index % 2 === 0 ? "report.completed" : "matching.completed"),
        ),
      ),
    );
    await Promise.all(events.map((event) => inbox.store(event)));
    const a = startWorker({ name: "a", concurrency: 3 });
    const b = startWorker({ name: "b", concurrency: 3 });
    const keys = events.map((event) => event.idempotencyKey as string);
    await waitFor(async () => {
      const result = await db.pool.query(
        `SELECT count(*)::int AS n FROM "${db.schema}".events WHERE key = ANY($1) AND status = 'done'`,
        [keys],
      );
      return result.rows[0].n === keys.length;
    }, 30_000);
    const counts = await db.pool.query(
      `SELECT event_key, count(*)::int AS n FROM ${effects} WHERE event_key = ANY($1) GROUP BY event_key`,
      [keys],
    );
    expect(counts.rows).toHaveLength(keys.length);
    expect(counts.rows.every((row: { n: number }) => row.n === 1)).toBe(true);
    expect(a.stats.done + b.stats.done).toBe(keys.length);
    await Promise.all([a.close(), b.close()]);
  });

  it("commit a batch together, each handler in its own savepoint: one failure affects only its event", async () => {
    const inbox = createInbox({ pool: db.pool, schema: db.schema });
    const events = Array.from({ length: 10 }, () =>
      parseEvent(JSON.stringify(createTestEvent("report.completed"))),
    );
    const failOnce = new Set(events.slice(0, 3).map((event) => event.idempotencyKey as string));
    // Stored before the worker starts, so its first batch holds all ten.
    await Promise.all(events.map((event) => inbox.store(event)));
    const transactions: number[] = [];
    const worker = createInboxWorker({
      pool: db.pool,
      schema: db.schema,
      batchSize: 10,
      pollIntervalMs: 50,
      backoff: () => 0,
      on: {
        "report.completed": async (event, client) => {
          const tx = await client.query("SELECT txid_current() AS tx");
          transactions.push(Number(tx.rows[0].tx));
          await client.query(`INSERT INTO ${effects} (event_key, worker) VALUES ($1, 'batch')`, [
            event.idempotencyKey,
          ]);
          if (failOnce.delete(event.idempotencyKey)) throw new Error("first attempt fails");
        },
      },
    });
    workers.push(worker);
    const keys = events.map((event) => event.idempotencyKey as string);
    await waitFor(async () => {
      const done = await db.pool.query(
        `SELECT count(*)::int AS n FROM "${db.schema}".events WHERE key = ANY($1) AND status = 'done'`,
        [keys],
      );
      return done.rows[0].n === keys.length;
    }, 20_000);
    for (const key of keys) expect(await effectCount(key)).toBe(1);
    const attempts = await db.pool.query(
      `SELECT attempts, count(*)::int AS n FROM "${db.schema}".events WHERE key = ANY($1) GROUP BY attempts ORDER BY attempts`,
      [keys],
    );
    expect(attempts.rows).toEqual([
      { attempts: 1, n: 7 },
      { attempts: 2, n: 3 },
    ]);
    // The first ten attempts ran in one transaction.
    expect(new Set(transactions.slice(0, 10)).size).toBe(1);
    expect(worker.stats).toMatchObject({ done: 10, retried: 3, failed: 0 });
    await worker.close();
  });

  it("park an event that is not a Mappa event at once, and complete unknown types without onUnknown", async () => {
    const worker = startWorker();
    await db.pool.query(
      `INSERT INTO "${db.schema}".events (key, type, payload) VALUES ('bad_1', 'report.completed', '{"type":"report.completed","data":{}}'), ('odd_1', 'call.transcribed', '{"type":"call.transcribed","id":"odd_1","data":{}}')`,
    );
    await waitFor(async () => (await getEvent(admin(), "bad_1"))?.status === "failed", 20_000);
    expect((await getEvent(admin(), "bad_1"))?.lastError).toMatch(/not a Mappa event.*data\.jobId/);
    await waitFor(async () => (await getEvent(admin(), "odd_1"))?.status === "done", 20_000);
    await worker.close();
  });

  it("report database failures to onError and keep going; close() still returns", async () => {
    const errors: string[] = [];
    const worker = createInboxWorker({
      pool: db.pool,
      schema: `${db.schema}_missing`,
      pollIntervalMs: 20,
      onError: (error, info) => void errors.push(`${info.outcome}: ${error.message}`),
    });
    await waitFor(() => errors.length >= 2, 20_000);
    await worker.close();
    expect(errors.some((line) => /^worker: .*migrate/.test(line))).toBe(true);
  });

  it("answer 503 when the database cannot be reached while receiving", async () => {
    const dead = createPool({ connectionString: "postgres://postgres@127.0.0.1:1/test", max: 1 });
    const inbox = createInbox({ pool: dead, timeoutMs: 5000 });
    const receiver = await startReceiver("express", { secret: SECRET, ...inbox.receiverOptions });
    try {
      const answer = await deliver(receiver.url, createTestEvent("report.completed"));
      expect(answer).toEqual({ status: 503, body: { error: "idempotency_store_failed" } });
    } finally {
      await receiver.close();
      await dead.end();
    }
  });
});

describe("retention", () => {
  it("prunes done events older than N days and expired idempotency keys, nothing else", async () => {
    const p = await createTestDatabase("prune");
    try {
      const events = `"${p.schema}".events`;
      await p.pool.query(
        `INSERT INTO ${events} (key, type, payload, status, done_at) VALUES
           ('old_done', 't', '{}', 'done', now() - interval '40 days'),
           ('new_done', 't', '{}', 'done', now() - interval '2 days'),
           ('old_failed', 't', '{}', 'failed', NULL),
           ('old_pending', 't', '{}', 'pending', NULL)`,
      );
      await p.pool.query(
        `INSERT INTO "${p.schema}".idempotency (key, token, completed, expires_at) VALUES
           ('gone', 't', true, now() - interval '1 second'),
           ('live', 't', false, now() + interval '1 hour')`,
      );
      expect(await prune({ pool: p.pool, schema: p.schema, olderThanDays: 30 })).toEqual({
        events: 1,
        idempotencyKeys: 1,
      });
      expect(await countEvents({ pool: p.pool, schema: p.schema })).toEqual({
        pending: 1,
        done: 1,
        failed: 1,
      });
      expect(await prune({ pool: p.pool, schema: p.schema, olderThanDays: 1 })).toEqual({
        events: 1,
        idempotencyKeys: 0,
      });
    } finally {
      await p.drop();
    }
  });
});
