import { type MappaWebhookError, parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTransactionalHandlers } from "../src/index.js";
import {
  createTestDatabase,
  deliver,
  keyOf,
  SECRET,
  sleep,
  type TestDatabase,
  waitFor,
} from "./helpers.js";
import { startReceiver } from "./receiver.js";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase("tx");
  await db.pool.query(
    "CREATE TABLE reports (id VARCHAR(255) PRIMARY KEY, job_id VARCHAR(255) NOT NULL) ENGINE=InnoDB",
  );
});
afterAll(async () => {
  await db.drop();
});

const reports = async (id: string) => {
  const [rows] = await db.pool.query("SELECT count(*) AS n FROM reports WHERE id = ?", [id]);
  return Number((rows as Array<{ n: number }>)[0]?.n);
};
const mark = async (key: string) => {
  const [rows] = await db.pool.query(
    "SELECT status, attempts, last_error FROM mappa_webhooks_events WHERE event_key = ?",
    [key],
  );
  return (rows as unknown[])[0];
};

describe("createTransactionalHandlers (MariaDB) over HTTP", () => {
  it("commits the write with the done mark, answers a duplicate 200 duplicate, rolls back a throw and runs it again", async () => {
    let attempt = 0;
    const tx = createTransactionalHandlers({
      pool: db.pool,
      on: {
        "report.completed": async (event, connection) => {
          await connection.query("INSERT INTO reports (id, job_id) VALUES (?, ?)", [
            event.data.reportId,
            event.data.jobId,
          ]);
          if (event.data.reportId.endsWith("fail") && ++attempt === 1) throw new Error("transient");
        },
      },
    });
    const receiver = await startReceiver({ secret: SECRET, logger: false, ...tx.receiverOptions });
    try {
      const ok = createTestEvent("report.completed");
      expect(await deliver(receiver.url, ok)).toEqual({ status: 200, body: { received: true } });
      expect(await deliver(receiver.url, ok)).toEqual({
        status: 200,
        body: { received: true, duplicate: true },
      });
      expect(await reports(ok.data.reportId)).toBe(1);
      expect(await mark(keyOf(ok))).toEqual({ status: "done", attempts: 1, last_error: null });

      const base = createTestEvent("report.completed");
      const failing = { ...base, data: { ...base.data, reportId: `${base.data.reportId}_fail` } };
      expect((await deliver(receiver.url, failing)).status).toBe(500);
      expect(await reports(failing.data.reportId)).toBe(0);
      expect(await mark(keyOf(failing))).toEqual({
        status: "failed",
        attempts: 1,
        last_error: "transient",
      });
      expect((await deliver(receiver.url, failing)).status).toBe(200);
      expect(await reports(failing.data.reportId)).toBe(1);
      expect(await mark(keyOf(failing))).toEqual({ status: "done", attempts: 2, last_error: null });
    } finally {
      await receiver.close();
    }
  });

  it("runs one of 8 concurrent copies; the others get 409 or 200 duplicate", async () => {
    let runs = 0;
    const tx = createTransactionalHandlers({
      pool: db.pool,
      on: {
        "report.completed": async (event, connection) => {
          runs++;
          await sleep(100);
          await connection.query("INSERT INTO reports (id, job_id) VALUES (?, ?)", [
            event.data.reportId,
            event.data.jobId,
          ]);
        },
      },
    });
    const receiver = await startReceiver({ secret: SECRET, logger: false, ...tx.receiverOptions });
    try {
      const event = createTestEvent("report.completed");
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => deliver(receiver.url, event)),
      );
      for (const answer of answers) expect([200, 409]).toContain(answer.status);
      expect(runs).toBe(1);
      expect(await reports(event.data.reportId)).toBe(1);
    } finally {
      await receiver.close();
    }
  });

  it("run(): handled, then duplicate; event_in_flight while another transaction holds the event", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered = false;
    const tx = createTransactionalHandlers({
      pool: db.pool,
      on: {
        "report.completed": () => {
          entered = true;
          return gate;
        },
      },
    });
    const event = parseEvent(JSON.stringify(createTestEvent("report.completed")));
    const first = tx.run(event);
    await waitFor(() => entered, 20_000);
    const second = await tx.run(event).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((second as MappaWebhookError).code).toBe("event_in_flight");
    release();
    expect(await first).toBe("handled");
    expect(await tx.run(event)).toBe("duplicate");
  });

  it("answers 503 idempotency_store_failed when the database is unreachable", async () => {
    const dead = mysql.createPool({ uri: "mysql://root@127.0.0.1:1/test", connectionLimit: 1 });
    const tx = createTransactionalHandlers({ pool: dead, on: {} });
    const receiver = await startReceiver({ secret: SECRET, logger: false, ...tx.receiverOptions });
    try {
      const answer = await deliver(receiver.url, createTestEvent("report.completed"));
      expect(answer).toEqual({ status: 503, body: { error: "idempotency_store_failed" } });
    } finally {
      await receiver.close();
      await dead.end();
    }
  });

  it("rejects bad options with invalid_options", () => {
    const attempts: Array<() => unknown> = [
      () => createTransactionalHandlers(undefined as never),
      () => createTransactionalHandlers({ pool: {} as never }),
      () => createTransactionalHandlers({ pool: db.pool, on: { "report.completed": 1 as never } }),
      () => createTransactionalHandlers({ pool: db.pool, timeoutMs: -1 }),
      () => createTransactionalHandlers({ pool: db.pool, eventsTable: "" }),
    ];
    for (const attempt of attempts) {
      let thrown: unknown;
      try {
        attempt();
      } catch (error) {
        thrown = error;
      }
      expect((thrown as MappaWebhookError).code).toBe("invalid_options");
    }
  });
});
