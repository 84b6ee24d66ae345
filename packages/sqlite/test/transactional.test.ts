import { MappaWebhookError, parseEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { afterAll, describe, expect, it } from "vitest";
import {
  createTransactionalHandlers,
  openSqliteDatabase,
  type SqliteConnection,
  type SqliteTransaction,
} from "../src/index.js";
import { cleanupDirs, DRIVER, deliver, keyOf, SECRET, sleep, tempFile } from "./helpers.js";
import { startReceiver } from "./receiver.js";

afterAll(cleanupDirs);

async function reportsTable(database: string): Promise<SqliteConnection> {
  const connection = await openSqliteDatabase(database, { driver: DRIVER });
  connection.exec("CREATE TABLE IF NOT EXISTS reports (id TEXT PRIMARY KEY, job_id TEXT NOT NULL)");
  return connection;
}

const reportCount = (c: SqliteConnection, id?: string) =>
  Number(
    (id === undefined
      ? c.get<{ n: number }>("SELECT count(*) AS n FROM reports")
      : c.get<{ n: number }>("SELECT count(*) AS n FROM reports WHERE id = ?", [id])
    )?.n,
  );

describe(`createTransactionalHandlers (${DRIVER}) over HTTP`, () => {
  it("commits the handler's write with the done mark; a duplicate is answered 200 duplicate and runs nothing", async () => {
    const database = tempFile("tx-commit");
    const reader = await reportsTable(database);
    const runs: string[] = [];
    const tx = createTransactionalHandlers({
      database,
      driver: DRIVER,
      on: {
        "report.completed": (event, t) => {
          runs.push(event.data.reportId);
          t.run("INSERT INTO reports (id, job_id) VALUES (?, ?)", [
            event.data.reportId,
            event.data.jobId,
          ]);
        },
      },
    });
    const receiver = await startReceiver({ secret: SECRET, ...tx.receiverOptions });
    try {
      const event = createTestEvent("report.completed");
      expect(await deliver(receiver.url, event)).toEqual({ status: 200, body: { received: true } });
      expect(await deliver(receiver.url, event)).toEqual({
        status: 200,
        body: { received: true, duplicate: true },
      });
      expect(runs).toHaveLength(1);
      expect(reportCount(reader, event.data.reportId)).toBe(1);
      const mark = reader.get<{ status: string; attempts: number; type: string }>(
        "SELECT status, attempts, type FROM mappa_webhooks_events WHERE key = ?",
        [keyOf(event)],
      );
      expect(mark).toMatchObject({ status: "done", attempts: 1, type: "report.completed" });
    } finally {
      await receiver.close();
      await tx.close();
      reader.close();
    }
  });

  it("rolls back a throwing handler's write, records the attempt, and runs it again on the retry", async () => {
    const database = tempFile("tx-rollback");
    const reader = await reportsTable(database);
    let attempt = 0;
    const tx = createTransactionalHandlers({
      database,
      driver: DRIVER,
      on: {
        "report.completed": async (event, t) => {
          t.run("INSERT INTO reports (id, job_id) VALUES (?, ?)", [
            event.data.reportId,
            event.data.jobId,
          ]);
          await sleep(5);
          if (++attempt === 1) throw new Error("transient failure after the write");
        },
      },
    });
    const receiver = await startReceiver({ secret: SECRET, ...tx.receiverOptions });
    try {
      const event = createTestEvent("report.completed");
      const first = await deliver(receiver.url, event);
      expect(first).toEqual({ status: 500, body: { error: "handler_failed" } });
      expect(reportCount(reader, event.data.reportId)).toBe(0);
      const failed = reader.get<{ status: string; attempts: number; last_error: string }>(
        "SELECT status, attempts, last_error FROM mappa_webhooks_events WHERE key = ?",
        [keyOf(event)],
      );
      expect(failed).toEqual({
        status: "failed",
        attempts: 1,
        last_error: "transient failure after the write",
      });
      expect(await deliver(receiver.url, event)).toEqual({ status: 200, body: { received: true } });
      expect(reportCount(reader, event.data.reportId)).toBe(1);
      expect(
        reader.get("SELECT status, attempts FROM mappa_webhooks_events WHERE key = ?", [
          keyOf(event),
        ]),
      ).toEqual({ status: "done", attempts: 2 });
    } finally {
      await receiver.close();
      await tx.close();
      reader.close();
    }
  });

  it("runs one of 8 concurrent copies of an event; the others get 409 or 200 duplicate, never a 5xx", async () => {
    const database = tempFile("tx-burst");
    const reader = await reportsTable(database);
    let runs = 0;
    const tx = createTransactionalHandlers({
      database,
      driver: DRIVER,
      on: {
        "report.completed": async (event, t) => {
          runs++;
          await sleep(100);
          t.run("INSERT INTO reports (id, job_id) VALUES (?, ?)", [
            event.data.reportId,
            event.data.jobId,
          ]);
        },
      },
    });
    const receiver = await startReceiver({ secret: SECRET, ...tx.receiverOptions });
    try {
      const event = createTestEvent("report.completed");
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => deliver(receiver.url, event)),
      );
      for (const answer of answers) expect([200, 409]).toContain(answer.status);
      expect(answers.filter((a) => a.status === 200 && a.body.duplicate !== true)).toHaveLength(1);
      expect(runs).toBe(1);
      expect(reportCount(reader, event.data.reportId)).toBe(1);
      // Other events wait their turn on the connection, and all commit.
      const others = Array.from({ length: 10 }, () => createTestEvent("report.completed"));
      const results = await Promise.all(others.map((e) => deliver(receiver.url, e)));
      expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
      expect(reportCount(reader)).toBe(11);
    } finally {
      await receiver.close();
      await tx.close();
      reader.close();
    }
  });

  it("refuses a write a handler left running after it returned, so it never lands in another event's transaction", async () => {
    const database = tempFile("tx-late");
    const reader = await reportsTable(database);
    let leaked: SqliteTransaction | undefined;
    const tx = createTransactionalHandlers({
      database,
      driver: DRIVER,
      on: {
        "report.completed": (_event, t) => {
          leaked = t;
        },
      },
    });
    try {
      await tx.run(parseEvent(JSON.stringify(createTestEvent("report.completed"))));
      expect(leaked).toBeDefined();
      let thrown: unknown;
      try {
        leaked?.run("INSERT INTO reports (id, job_id) VALUES ('late', 'late')");
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(MappaWebhookError);
      expect((thrown as Error).message).toMatch(/has ended/);
      expect(reportCount(reader)).toBe(0);
    } finally {
      await tx.close();
      reader.close();
    }
  });

  it("run(): handled once, then duplicate; an unknown type goes to onUnknown in a transaction", async () => {
    const database = tempFile("tx-run");
    const reader = await reportsTable(database);
    const unknown: string[] = [];
    const tx = createTransactionalHandlers({
      database,
      driver: DRIVER,
      on: {
        "report.completed": (event, t) => {
          t.run("INSERT INTO reports (id, job_id) VALUES (?, ?)", [
            event.data.reportId,
            event.data.jobId,
          ]);
        },
      },
      onUnknown: (event, t) => {
        unknown.push(event.type);
        t.run("INSERT INTO reports (id, job_id) VALUES (?, 'unknown')", [event.id ?? "none"]);
      },
    });
    try {
      const event = parseEvent(JSON.stringify(createTestEvent("report.completed")));
      expect(await tx.run(event)).toBe("handled");
      expect(await tx.run(event)).toBe("duplicate");
      const other = parseEvent(JSON.stringify(createTestEvent("report.archived")));
      expect(await tx.run(other)).toBe("handled");
      expect(unknown).toEqual(["report.archived"]);
      expect(reportCount(reader)).toBe(2);
    } finally {
      await tx.close();
      reader.close();
    }
  });

  it("answers 503 idempotency_store_failed while another process holds the write lock past timeoutMs", async () => {
    const database = tempFile("tx-locked");
    const reader = await reportsTable(database);
    const tx = createTransactionalHandlers({ database, driver: DRIVER, timeoutMs: 300, on: {} });
    await tx.ready();
    const receiver = await startReceiver({ secret: SECRET, ...tx.receiverOptions });
    try {
      reader.exec("BEGIN IMMEDIATE");
      const answer = await deliver(receiver.url, createTestEvent("report.completed"));
      reader.exec("ROLLBACK");
      expect(answer).toEqual({ status: 503, body: { error: "idempotency_store_failed" } });
      expect((await deliver(receiver.url, createTestEvent("report.completed"))).status).toBe(200);
    } finally {
      await receiver.close();
      await tx.close();
      reader.close();
    }
  });

  it("rejects bad options with invalid_options", () => {
    const attempts: Array<() => unknown> = [
      () => createTransactionalHandlers(undefined as never),
      () =>
        createTransactionalHandlers({ database: "x.db", on: { "report.completed": 5 as never } }),
      () => createTransactionalHandlers({ database: "x.db", onUnknown: "no" as never }),
      () => createTransactionalHandlers({ database: "x.db", recordFailures: "yes" as never }),
      () => createTransactionalHandlers({ database: "x.db", eventsTable: "" }),
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
