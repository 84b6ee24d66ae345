import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import { createDeliverySimulator, createTestEvent } from "@mappa-webhooks/testing";
import { expectSoakExactlyOnce, runStoreSoak } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, describe, expect, it } from "vitest";
import { createTestDatabase, keyOf, SECRET, startFixture, type TestDatabase } from "./helpers.js";
import { createEffectTables } from "./tables.js";

// Two receiver processes share one database. 1,000 events are delivered concurrently, 30% of
// them twice (20% at the same moment to both processes, 10% again after the first delivery was
// answered), and 20% fail their first handler attempt. Every event's effect must exist exactly
// once; with transactional handlers it is written in the event's transaction. The driver is
// the shared one (runStoreSoak); what is MariaDB's is here.
const EVENTS = 1000;
const databases: TestDatabase[] = [];
afterAll(async () => {
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
      const query = async <T>(sql: string) => (await db.pool.query(sql))[0] as T[];
      const result = await runStoreSoak({
        label: { mode, database: "MariaDB" },
        events: EVENTS,
        createEvent: (index, data) =>
          createTestEvent(MAPPA_EVENT_TYPES[index % MAPPA_EVENT_TYPES.length] as string, { data }),
        keyOf,
        startReceiver: (instance) => startFixture("receiver.mjs", { ...env, INSTANCE: instance }),
        createDeliverySimulator,
        secret: SECRET,
        async measure() {
          const [marks] = await query<{ n: number }>("SELECT count(*) AS n FROM first_attempts");
          const effects = await query<{ key: string; worker: string }>(
            "SELECT event_key AS `key`, worker FROM effects",
          );
          if (mode !== "transactional") return { effects, handlersFailingOnce: Number(marks?.n) };
          const [done] = await query<{ n: number }>(
            "SELECT count(*) AS n FROM mappa_webhooks_events WHERE status = 'done'",
          );
          return {
            effects,
            handlersFailingOnce: Number(marks?.n),
            extra: { doneMarks: Number(done?.n) },
          };
        },
      });
      expectSoakExactlyOnce(result, EVENTS);
      if (mode === "transactional") expect(result.doneMarks).toBe(EVENTS);
    });
  },
);
