import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import {
  createDeliverySimulator,
  createTestEvent,
  type DeliveryAttempt,
} from "@mappa-webhooks/testing";
import { runSoakDeliveries } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, describe, expect, it } from "vitest";
import {
  type Child,
  createTestDatabase,
  keyOf,
  SECRET,
  startFixture,
  type TestDatabase,
  webhookUrlOf,
} from "./helpers.js";
import { createEffectTables } from "./tables.js";

// Two receiver processes share one database. 1,000 events are delivered concurrently, 30% of
// them twice (20% at the same moment to both processes, 10% again after the first delivery was
// answered), and 20% fail their first handler attempt. Every event's effect must exist exactly
// once; with transactional handlers it is written in the event's transaction.
const EVENTS = 1000;
const children: Child[] = [];
const databases: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await Promise.all(databases.map((db) => db.drop()));
});

describe.each(["transactional", "store"] as const)(
  "soak (MariaDB): two %s receiver processes on one database",
  (mode) => {
    it("records every event's effect exactly once under duplicates and transient failures", {
      timeout: 400_000,
    }, async () => {
      const db = await createTestDatabase(`soak_${mode}`);
      databases.push(db);
      await createEffectTables(db);
      const env = { MAPPA_WEBHOOK_SECRET: SECRET, MYSQL_URL: db.url, MODE: mode, PORT: "0" };
      const receivers = ["a", "b"].map((instance) =>
        startFixture("receiver.mjs", { ...env, INSTANCE: instance }),
      );
      children.push(...receivers);
      const urls = [
        await webhookUrlOf(receivers[0] as Child),
        await webhookUrlOf(receivers[1] as Child),
      ] as const;
      const events = Array.from({ length: EVENTS }, (_, index) =>
        createTestEvent(MAPPA_EVENT_TYPES[index % MAPPA_EVENT_TYPES.length] as string, {
          data: { failFirst: index % 5 === 0 },
        }),
      );
      const attempts: DeliveryAttempt[] = [];
      const mappa = createDeliverySimulator({
        secret: SECRET,
        timeScale: 0.002,
        timeoutMs: 30_000,
        onAttempt: (attempt) => void attempts.push(attempt),
      });
      let abandoned = 0;
      const sent = await runSoakDeliveries({
        events,
        urls,
        lanes: 16,
        deadlineMs: 180_000,
        deliver: async (url, event) => {
          const report = await mappa.deliver(url, event);
          if (!report.delivered) abandoned++;
        },
      });
      const query = async <T>(sql: string) => (await db.pool.query(sql))[0] as T[];
      const perKey = new Map<string, number>(events.map((event) => [keyOf(event), 0]));
      for (const row of await query<{ event_key: string; n: number }>(
        "SELECT event_key, count(*) AS n FROM effects GROUP BY event_key",
      )) {
        perKey.set(row.event_key, Number(row.n));
      }
      const byProcess = Object.fromEntries(
        (
          await query<{ worker: string; n: number }>(
            "SELECT worker, count(*) AS n FROM effects GROUP BY worker",
          )
        ).map((row) => [row.worker, Number(row.n)]),
      );
      const [marks] = await query<{ n: number }>("SELECT count(*) AS n FROM first_attempts");
      const answers: Record<string, number> = {};
      for (const attempt of attempts) {
        const label =
          attempt.status === undefined ? (attempt.errorCode ?? "error") : String(attempt.status);
        answers[label] = (answers[label] ?? 0) + 1;
      }
      const counts = [...perKey.values()];
      const result: Record<string, unknown> & { answers: Record<string, number> } = {
        mode,
        database: "MariaDB",
        eventsSent: EVENTS,
        duplicatedEvents: sent.duplicatedEvents,
        deliveries: sent.deliveries,
        httpRequests: attempts.length,
        answers,
        duplicateAnswers200: attempts.filter(
          (a) => a.status === 200 && a.responseBody?.includes('"duplicate":true') === true,
        ).length,
        handlersFailingOnce: Number(marks?.n),
        effectsRecorded: counts.filter((n) => n === 1).length,
        missing: counts.filter((n) => n === 0).length,
        doubled: counts.filter((n) => n > 1).length,
        effectsByProcess: byProcess,
        abandoned,
        receivedMs: sent.receivedMs,
      };
      if (mode === "transactional") {
        const [done] = await query<{ n: number }>(
          "SELECT count(*) AS n FROM mappa_webhooks_events WHERE status = 'done'",
        );
        result.doneMarks = Number(done?.n);
      }
      console.log(`[soak] ${JSON.stringify(result)}`);
      expect(result.abandoned).toBe(0);
      expect(result.duplicatedEvents).toBe(300);
      expect(result.deliveries).toBe(EVENTS + 300);
      expect(result.handlersFailingOnce).toBe(EVENTS / 5);
      expect(result.effectsRecorded).toBe(EVENTS);
      expect(result.missing).toBe(0);
      expect(result.doubled).toBe(0);
      expect(result.answers["500"]).toBe(EVENTS / 5);
      for (const status of Object.keys(result.answers))
        expect(["200", "409", "500"]).toContain(status);
      if (mode === "transactional") expect(result.doneMarks).toBe(EVENTS);
      expect(byProcess.a).toBeGreaterThan(0);
      expect(byProcess.b).toBeGreaterThan(0);
    });
  },
);
