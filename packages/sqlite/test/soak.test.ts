import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import { createDeliverySimulator, createTestEvent } from "@mappa-webhooks/testing";
import { expectSoakExactlyOnce, runStoreSoak } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteDatabase } from "../src/index.js";
import { cleanupDirs, DRIVER, keyOf, SECRET, startFixture, tempDir } from "./helpers.js";

// Two receiver processes share one SQLite file. 1,000 events are delivered concurrently, 30%
// of them twice (20% at the same moment to both processes, 10% again after the first delivery
// was answered), and 20% fail their first handler attempt. Every event's effect must exist
// exactly once; with transactional handlers it is written in the event's transaction. The
// driver is the shared one (runStoreSoak); what is SQLite's is here.
const EVENTS = 1000;

afterAll(() => {
  cleanupDirs();
});

describe.each(["transactional", "store"] as const)(
  `soak (${DRIVER}): two %s receiver processes on one file`,
  (mode) => {
    it("records every event's effect exactly once under duplicates and transient failures", {
      timeout: 400_000,
    }, async () => {
      const dir = tempDir(`soak-${mode}`);
      const database = join(dir, "mappa-webhooks.db");
      const markers = join(dir, "markers");
      mkdirSync(markers);
      const env = {
        MAPPA_WEBHOOK_SECRET: SECRET,
        DATABASE: database,
        MARKERS: markers,
        MODE: mode,
        PORT: "0",
      };
      const result = await runStoreSoak({
        label: { mode, driver: DRIVER },
        events: EVENTS,
        createEvent: (index, data) =>
          createTestEvent(MAPPA_EVENT_TYPES[index % MAPPA_EVENT_TYPES.length] as string, { data }),
        keyOf,
        startReceiver: (instance) => startFixture("receiver.mjs", { ...env, INSTANCE: instance }),
        createDeliverySimulator,
        secret: SECRET,
        async measure() {
          const reader = await openSqliteDatabase(database, { driver: DRIVER });
          try {
            const effects = reader.all<{ key: string; worker: string }>(
              "SELECT event_key AS key, worker FROM effects",
            );
            const handlersFailingOnce = readdirSync(markers).length;
            if (mode !== "transactional") return { effects, handlersFailingOnce };
            const done = Number(
              reader.get<{ n: number }>(
                "SELECT count(*) AS n FROM mappa_webhooks_events WHERE status = 'done'",
              )?.n,
            );
            return { effects, handlersFailingOnce, extra: { doneMarks: done } };
          } finally {
            reader.close();
          }
        },
      });
      expectSoakExactlyOnce(result, EVENTS);
      if (mode === "transactional") expect(result.doneMarks).toBe(EVENTS);
      expect(result.duplicateAnswers200).toBeGreaterThanOrEqual(1);
    });
  },
);
