import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import {
  createDeliverySimulator,
  createTestEvent,
  type DeliveryAttempt,
} from "@mappa-webhooks/testing";
import { runSoakDeliveries } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteDatabase } from "../src/index.js";
import {
  type Child,
  cleanupDirs,
  DRIVER,
  keyOf,
  SECRET,
  startFixture,
  tempDir,
  webhookUrlOf,
} from "./helpers.js";

// Two receiver processes share one SQLite file. 1,000 events are delivered concurrently, 30%
// of them twice (20% at the same moment to both processes, 10% again after the first delivery
// was answered), and 20% fail their first handler attempt. Every event's effect must exist
// exactly once; with transactional handlers it is written in the event's transaction.
const EVENTS = 1000;
const children: Child[] = [];

afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
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
      // Mappa's schedule at 1/500 (0, 10, 60, 600, 3600 ms): errors and 409s are retried.
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

      const reader = await openSqliteDatabase(database, { driver: DRIVER });
      const perKey = new Map<string, number>(events.map((event) => [keyOf(event), 0]));
      for (const row of reader.all<{ event_key: string; n: number }>(
        "SELECT event_key, count(*) AS n FROM effects GROUP BY event_key",
      )) {
        perKey.set(row.event_key, Number(row.n));
      }
      const byWorker = Object.fromEntries(
        reader
          .all<{ worker: string; n: number }>(
            "SELECT worker, count(*) AS n FROM effects GROUP BY worker",
          )
          .map((row) => [row.worker, Number(row.n)]),
      );
      const firstAttempts = readdirSync(markers).length;
      const answers: Record<string, number> = {};
      for (const attempt of attempts) {
        const label =
          attempt.status === undefined ? (attempt.errorCode ?? "error") : String(attempt.status);
        answers[label] = (answers[label] ?? 0) + 1;
      }
      const counts = [...perKey.values()];
      const result = {
        mode,
        driver: DRIVER,
        eventsSent: EVENTS,
        duplicatedEvents: sent.duplicatedEvents,
        deliveries: sent.deliveries,
        httpRequests: attempts.length,
        answers,
        duplicateAnswers200: attempts.filter(
          (a) => a.status === 200 && a.responseBody?.includes('"duplicate":true') === true,
        ).length,
        handlersFailingOnce: firstAttempts,
        effectsRecorded: counts.filter((n) => n === 1).length,
        missing: counts.filter((n) => n === 0).length,
        doubled: counts.filter((n) => n > 1).length,
        effectsByProcess: byWorker,
        abandoned,
        receivedMs: sent.receivedMs,
      };
      if (mode === "transactional") {
        const done = Number(
          reader.get<{ n: number }>(
            "SELECT count(*) AS n FROM mappa_webhooks_events WHERE status = 'done'",
          )?.n,
        );
        Object.assign(result, { doneMarks: done });
        expect(done).toBe(EVENTS);
      }
      reader.close();
      console.log(`[soak] ${JSON.stringify(result)}`);

      expect(result.abandoned).toBe(0);
      expect(result.duplicatedEvents).toBe(300);
      expect(result.deliveries).toBe(EVENTS + 300);
      expect(result.handlersFailingOnce).toBe(EVENTS / 5);
      expect(result.effectsRecorded).toBe(EVENTS);
      expect(result.missing).toBe(0);
      expect(result.doubled).toBe(0);
      // Each failing-once event was answered 500 once, then handled on a retry.
      expect(result.answers["500"]).toBe(EVENTS / 5);
      expect(Object.keys(result.answers).sort()).toEqual(
        Object.keys(result.answers)
          .filter((status) => ["200", "409", "500"].includes(status))
          .sort(),
      );
      expect(result.duplicateAnswers200).toBeGreaterThanOrEqual(1);
      expect(result.effectsByProcess.a).toBeGreaterThan(0);
      expect(result.effectsByProcess.b).toBeGreaterThan(0);
    });
  },
);
