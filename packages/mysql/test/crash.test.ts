import { createTestEvent, simulateDelivery } from "@mappa-webhooks/testing";
import { type Child, crashAfterEffect } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, describe, expect, it } from "vitest";
import {
  createTestDatabase,
  deliver,
  keyOf,
  SECRET,
  startFixture,
  type TestDatabase,
} from "./helpers.js";
import { createEffectTables, effectsOf } from "./tables.js";

const children: Child[] = [];
const track = (child: Child) => {
  children.push(child);
  return child;
};
const databases: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await Promise.all(databases.map((db) => db.drop()));
});

// A receiver is killed with SIGKILL right after its handler wrote the event's effect; a new
// process starts on the same database and Mappa's retry reaches it.
describe.each([
  {
    mode: "transactional",
    effects: ["rescuer"],
    what: "exactly one effect: the killed write rolled back",
  },
  {
    mode: "store",
    effects: ["doomed", "rescuer"],
    what: "the documented at-least-once: the effect ran again after the lease",
  },
] as const)(
  "crash (MariaDB): kill -9 after the handler's effect, $mode",
  ({ mode, effects, what }) => {
    it(`restart and redelivery give ${what}`, async () => {
      const db = await createTestDatabase(`crash_${mode}`);
      databases.push(db);
      await createEffectTables(db);
      const env = {
        MAPPA_WEBHOOK_SECRET: SECRET,
        MYSQL_URL: db.url,
        MODE: mode,
        PORT: "0",
        LEASE_MS: "1000",
      };
      const { answer, event, key, report, recoveryMs, rescuer, url } = await crashAfterEffect({
        start: (instance) => track(startFixture("receiver.mjs", { ...env, INSTANCE: instance })),
        event: createTestEvent("report.completed"),
        keyOf,
        deliver,
        // Mappa's retries at 1/100 of its schedule: 409 while the dead session's lock or lease lasts.
        redeliver: (to, stalled) =>
          simulateDelivery(to, stalled, { secret: SECRET, timeScale: 0.01 }),
      });
      expect(answer).toBe("network error");
      expect(report.delivered).toBe(true);
      const written = await effectsOf(db, key);
      console.log(
        `[crash] ${JSON.stringify({ database: "MariaDB", mode, effects: written, retryAnswers: report.attempts.map((a) => a.status ?? a.errorCode), recoveryMs })}`,
      );
      expect(written).toEqual(effects);
      if (mode === "transactional") {
        const [rows] = await db.pool.query(
          "SELECT status, attempts FROM mappa_webhooks_events WHERE event_key = ?",
          [key],
        );
        expect(rows).toEqual([{ status: "done", attempts: 1 }]);
      }
      expect(await deliver(url, event)).toEqual({
        status: 200,
        body: { received: true, duplicate: true },
      });
      expect(await effectsOf(db, key)).toEqual(effects);
      await rescuer.kill();
    });
  },
);
