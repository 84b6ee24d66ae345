import { createTestEvent, simulateDelivery } from "@mappa-webhooks/testing";
import { afterAll, describe, expect, it } from "vitest";
import {
  type Child,
  createTestDatabase,
  deliver,
  keyOf,
  SECRET,
  startFixture,
  type TestDatabase,
  webhookUrlOf,
} from "./helpers.js";
import { createEffectTables, effectsOf } from "./tables.js";

const children: Child[] = [];
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
      const doomed = startFixture("receiver.mjs", { ...env, INSTANCE: "doomed" });
      children.push(doomed);
      const base = createTestEvent("report.completed");
      const event = { ...base, data: { ...base.data, stallOn: "doomed" } };
      const answer = deliver(await webhookUrlOf(doomed), event).then(
        (result) => result.status,
        () => "network error",
      );
      await doomed.waitForLine(new RegExp(`^wrote ${keyOf(event)}$`), 30_000);
      const killedAt = performance.now();
      await doomed.kill("SIGKILL");
      expect(await answer).toBe("network error");

      const rescuer = startFixture("receiver.mjs", { ...env, INSTANCE: "rescuer" });
      children.push(rescuer);
      const url = await webhookUrlOf(rescuer);
      // Mappa's retries at 1/100 of its schedule: 409 while the dead session's lock or lease lasts.
      const report = await simulateDelivery(url, event, { secret: SECRET, timeScale: 0.01 });
      const recoveryMs = Math.round(performance.now() - killedAt);
      expect(report.delivered).toBe(true);
      const written = await effectsOf(db, keyOf(event));
      console.log(
        `[crash] ${JSON.stringify({ database: "MariaDB", mode, effects: written, retryAnswers: report.attempts.map((a) => a.status ?? a.errorCode), recoveryMs })}`,
      );
      expect(written).toEqual(effects);
      if (mode === "transactional") {
        const [rows] = await db.pool.query(
          "SELECT status, attempts FROM mappa_webhooks_events WHERE event_key = ?",
          [keyOf(event)],
        );
        expect(rows).toEqual([{ status: "done", attempts: 1 }]);
      }
      expect(await deliver(url, event)).toEqual({
        status: 200,
        body: { received: true, duplicate: true },
      });
      expect(await effectsOf(db, keyOf(event))).toEqual(effects);
      await rescuer.kill();
    });
  },
);
