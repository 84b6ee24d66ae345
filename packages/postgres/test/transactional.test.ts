import { parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { type Generated, Kysely, PostgresDialect } from "kysely";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTransactionalHandlers, getEvent, singleClientPool } from "../src/index.js";
import {
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

beforeAll(async () => {
  db = await createTestDatabase("tx");
  effects = `"${db.schema}".effects`;
  await db.pool.query(
    `CREATE TABLE ${effects} (id serial PRIMARY KEY, event_key text NOT NULL, note text)`,
  );
});

afterAll(async () => {
  await db.drop();
});

async function effectsOf(key: string): Promise<string[]> {
  const result = await db.pool.query(
    `SELECT note FROM ${effects} WHERE event_key = $1 ORDER BY id`,
    [key],
  );
  return result.rows.map((row: { note: string }) => row.note);
}

/** Writes one effect row with the transaction's client. */
async function writeEffect(client: pg.PoolClient, key: string, note: string): Promise<void> {
  await client.query(`INSERT INTO ${effects} (event_key, note) VALUES ($1, $2)`, [key, note]);
}

describe.each<AdapterName>(["express", "fastify", "hono"])(
  "transactional handlers on %s",
  (adapter) => {
    it("commits the handler's write with the done mark, and answers a re-delivery as a duplicate", async () => {
      const tx = createTransactionalHandlers({
        pool: db.pool,
        schema: db.schema,
        on: {
          "report.completed": (event, client) =>
            writeEffect(client, event.idempotencyKey, event.data.reportId),
        },
      });
      const receiver = await startReceiver(adapter, { secret: SECRET, ...tx.receiverOptions });
      try {
        const event = createTestEvent("report.completed");
        expect(await deliver(receiver.url, event)).toEqual({
          status: 200,
          body: { received: true },
        });
        expect(await effectsOf(keyOf(event))).toEqual([event.data.reportId]);
        const stored = await getEvent({ pool: db.pool, schema: db.schema }, keyOf(event));
        expect(stored).toMatchObject({ status: "done", attempts: 1, type: "report.completed" });
        expect(stored?.payload).toMatchObject({
          id: event.id,
          data: { reportId: event.data.reportId },
        });

        expect(await deliver(receiver.url, event)).toEqual({
          status: 200,
          body: { received: true, duplicate: true },
        });
        expect(await effectsOf(keyOf(event))).toHaveLength(1);
      } finally {
        await receiver.close();
      }
    });

    it("rolls back the handler's write when it throws; the retry runs on clean state", async () => {
      let calls = 0;
      const tx = createTransactionalHandlers({
        pool: db.pool,
        schema: db.schema,
        on: {
          "matching.completed": async (event, client) => {
            calls++;
            await writeEffect(client, event.idempotencyKey, `attempt ${calls}`);
            if (calls === 1) throw new Error("the downstream call failed after the write");
          },
        },
      });
      const receiver = await startReceiver(adapter, { secret: SECRET, ...tx.receiverOptions });
      try {
        const event = createTestEvent("matching.completed");
        const first = await deliver(receiver.url, event);
        expect(first.status).toBe(500);
        expect(first.body.error).toBe("handler_failed");
        expect(await effectsOf(keyOf(event))).toEqual([]);
        // The failed attempt is on record (outside the rolled-back transaction), replayable.
        expect(await getEvent({ pool: db.pool, schema: db.schema }, keyOf(event))).toMatchObject({
          status: "failed",
          attempts: 1,
          lastError: "the downstream call failed after the write",
        });

        expect(await deliver(receiver.url, event)).toEqual({
          status: 200,
          body: { received: true },
        });
        expect(await effectsOf(keyOf(event))).toEqual(["attempt 2"]);
        expect(await getEvent({ pool: db.pool, schema: db.schema }, keyOf(event))).toMatchObject({
          status: "done",
          attempts: 2,
          lastError: null,
        });
      } finally {
        await receiver.close();
      }
    });
  },
);

describe("transactional handlers under concurrency and crashes", () => {
  it("never runs a concurrent duplicate in parallel: it gets 409 at once", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const tx = createTransactionalHandlers({
      pool: db.pool,
      schema: db.schema,
      on: {
        "report.failed": async (event, client) => {
          runs++;
          running++;
          maxRunning = Math.max(maxRunning, running);
          await writeEffect(client, event.idempotencyKey, event.data.error.code);
          await gate;
          running--;
        },
      },
    });
    const receiver = await startReceiver("express", { secret: SECRET, ...tx.receiverOptions });
    try {
      const event = createTestEvent("report.failed");
      const first = deliver(receiver.url, event);
      await waitFor(() => runs === 1, 10_000);
      const duplicates = await Promise.all([1, 2, 3].map(() => deliver(receiver.url, event)));
      for (const answer of duplicates) {
        expect(answer.status).toBe(409);
        expect(answer.body.error).toBe("event_in_flight");
      }
      // Not committed yet: nobody else sees the write.
      expect(await effectsOf(keyOf(event))).toEqual([]);
      release();
      expect(await first).toEqual({ status: 200, body: { received: true } });
      expect(await deliver(receiver.url, event)).toMatchObject({ body: { duplicate: true } });
      expect(runs).toBe(1);
      expect(maxRunning).toBe(1);
      expect(await effectsOf(keyOf(event))).toHaveLength(1);
    } finally {
      release();
      await receiver.close();
    }
  });

  it("rolls everything back when the connection dies mid-handler (the database's view of a crash)", async () => {
    let calls = 0;
    let backendPid = 0;
    const tx = createTransactionalHandlers({
      pool: db.pool,
      schema: db.schema,
      on: {
        "report.completed": async (event, client) => {
          calls++;
          await writeEffect(client, event.idempotencyKey, `attempt ${calls}`);
          if (calls === 1) {
            const pid = await client.query("SELECT pg_backend_pid() AS pid");
            backendPid = pid.rows[0].pid;
            // Another session ends this one, as Postgres does when a process dies.
            await db.pool.query("SELECT pg_terminate_backend($1)", [backendPid]);
            await client.query("SELECT 1");
          }
        },
      },
    });
    const receiver = await startReceiver("express", { secret: SECRET, ...tx.receiverOptions });
    try {
      const event = createTestEvent("report.completed");
      expect((await deliver(receiver.url, event)).status).toBe(500);
      expect(backendPid).toBeGreaterThan(0);
      expect(await effectsOf(keyOf(event))).toEqual([]);
      expect(await deliver(receiver.url, event)).toEqual({ status: 200, body: { received: true } });
      expect(await effectsOf(keyOf(event))).toEqual(["attempt 2"]);
    } finally {
      await receiver.close();
    }
  });

  it("runs a Kysely query builder inside the event's transaction", async () => {
    interface Database {
      effects: { id: Generated<number>; event_key: string; note: string | null };
    }
    let calls = 0;
    const tx = createTransactionalHandlers({
      pool: db.pool,
      schema: db.schema,
      on: {
        "report.completed": async (event, client) => {
          calls++;
          const kysely = new Kysely<Database>({
            dialect: new PostgresDialect({ pool: singleClientPool(client) }),
          }).withSchema(db.schema);
          await kysely
            .insertInto("effects")
            .values({ event_key: event.idempotencyKey, note: `kysely ${calls}` })
            .execute();
          // Reads its own uncommitted write: the same transaction.
          const seen = await kysely
            .selectFrom("effects")
            .select("note")
            .where("event_key", "=", event.idempotencyKey)
            .execute();
          expect(seen).toHaveLength(1);
          if (calls === 1) throw new Error("fails after the Kysely insert");
        },
      },
    });
    const receiver = await startReceiver("express", { secret: SECRET, ...tx.receiverOptions });
    try {
      const event = createTestEvent("report.completed");
      expect((await deliver(receiver.url, event)).status).toBe(500);
      expect(await effectsOf(keyOf(event))).toEqual([]);
      expect((await deliver(receiver.url, event)).status).toBe(200);
      expect(await effectsOf(keyOf(event))).toEqual(["kysely 2"]);
    } finally {
      await receiver.close();
    }
  });

  it("works without the receiver's store too (run), deduplicating by the done mark", async () => {
    let runs = 0;
    const tx = createTransactionalHandlers({
      pool: db.pool,
      schema: db.schema,
      on: {
        "report.completed": async (event, client) => {
          runs++;
          await writeEffect(client, event.idempotencyKey, "run");
        },
      },
    });
    const event = parseEvent(JSON.stringify(createTestEvent("report.completed")));
    expect(await tx.run(event)).toBe("handled");
    expect(await tx.run(event)).toBe("duplicate");
    const receiver = await startReceiver("express", {
      secret: SECRET,
      ...tx.receiverOptions,
      idempotency: false,
    });
    try {
      expect(await deliver(receiver.url, event.raw)).toEqual({
        status: 200,
        body: { received: true },
      });
    } finally {
      await receiver.close();
    }
    expect(runs).toBe(1);
    expect(await effectsOf(event.idempotencyKey as string)).toHaveLength(1);
  });

  it("handles unknown event types with onUnknown, and events without a key every time", async () => {
    const seen: string[] = [];
    const tx = createTransactionalHandlers({
      pool: db.pool,
      schema: db.schema,
      onUnknown: async (event, client) => {
        seen.push(event.type);
        await client.query(`INSERT INTO ${effects} (event_key, note) VALUES ($1, $2)`, [
          event.idempotencyKey ?? "none",
          event.type,
        ]);
      },
    });
    const receiver = await startReceiver("express", { secret: SECRET, ...tx.receiverOptions });
    try {
      const keyless = { type: "call.transcribed", createdAt: new Date().toISOString(), data: {} };
      expect((await deliver(receiver.url, keyless)).status).toBe(200);
      expect((await deliver(receiver.url, keyless)).status).toBe(200);
      const withId = { ...keyless, id: `evt_unknown_${Date.now()}` };
      expect((await deliver(receiver.url, withId)).status).toBe(200);
      expect((await deliver(receiver.url, withId)).body).toEqual({
        received: true,
        duplicate: true,
      });
      expect(seen).toEqual(["call.transcribed", "call.transcribed", "call.transcribed"]);
    } finally {
      await receiver.close();
    }
  });

  it("gives every connection back to the pool", async () => {
    await waitFor(() => db.pool.totalCount === db.pool.idleCount, 5000);
    expect(db.pool.waitingCount).toBe(0);
  });
});
