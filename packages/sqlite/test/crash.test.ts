import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createTestEvent, simulateDelivery } from "@mappa-webhooks/testing";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteDatabase } from "../src/index.js";
import {
  type Child,
  cleanupDirs,
  DRIVER,
  deliver,
  keyOf,
  SECRET,
  startFixture,
  tempDir,
  webhookUrlOf,
} from "./helpers.js";

const children: Child[] = [];
afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  cleanupDirs();
});

// A receiver is killed with SIGKILL right after its handler wrote the event's effect, before
// the delivery finished; a new process starts on the same file and Mappa's retry reaches it.
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
  `crash (${DRIVER}): kill -9 after the handler's effect, $mode`,
  ({ mode, effects, what }) => {
    it(`restart and redelivery give ${what}`, async () => {
      const dir = tempDir(`crash-${mode}`);
      const database = join(dir, "mappa-webhooks.db");
      const markers = join(dir, "markers");
      mkdirSync(markers);
      // A short lease, so the store mode's retry is not held off for a minute.
      const env = {
        MAPPA_WEBHOOK_SECRET: SECRET,
        DATABASE: database,
        MARKERS: markers,
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
      // Mappa's retries (at 1/100 of its schedule): 409 while the dead process's lease lasts.
      const report = await simulateDelivery(await webhookUrlOf(rescuer), event, {
        secret: SECRET,
        timeScale: 0.01,
      });
      const recoveryMs = Math.round(performance.now() - killedAt);
      expect(report.delivered).toBe(true);
      const reader = await openSqliteDatabase(database, { driver: DRIVER });
      const written = reader
        .all<{ worker: string }>("SELECT worker FROM effects WHERE event_key = ? ORDER BY id", [
          keyOf(event),
        ])
        .map((row) => row.worker);
      const summary = {
        driver: DRIVER,
        mode,
        effects: written,
        retryAnswers: report.attempts.map((attempt) => attempt.status ?? attempt.errorCode),
        recoveryMs,
      };
      console.log(`[crash] ${JSON.stringify(summary)}`);
      expect(written).toEqual(effects);
      if (mode === "transactional") {
        expect(
          reader.get("SELECT status, attempts FROM mappa_webhooks_events WHERE key = ?", [
            keyOf(event),
          ]),
        ).toEqual({ status: "done", attempts: 1 });
      }
      // A later duplicate runs nothing more.
      const again = await deliver(await webhookUrlOf(rescuer), event);
      expect(again).toEqual({ status: 200, body: { received: true, duplicate: true } });
      expect(
        reader.all("SELECT worker FROM effects WHERE event_key = ?", [keyOf(event)]),
      ).toHaveLength(effects.length);
      reader.close();
      await rescuer.kill();
    });
  },
);
