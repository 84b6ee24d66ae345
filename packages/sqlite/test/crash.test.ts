import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createTestEvent, simulateDelivery } from "@mappa-webhooks/testing";
import { type Child, crashAfterEffect } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteDatabase } from "../src/index.js";
import { cleanupDirs, DRIVER, deliver, keyOf, SECRET, startFixture, tempDir } from "./helpers.js";

const children: Child[] = [];
const track = (child: Child) => {
  children.push(child);
  return child;
};
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
      const { answer, event, key, report, recoveryMs, rescuer, url } = await crashAfterEffect({
        start: (instance) => track(startFixture("receiver.mjs", { ...env, INSTANCE: instance })),
        event: createTestEvent("report.completed"),
        keyOf,
        deliver,
        // Mappa's retries (at 1/100 of its schedule): 409 while the dead process's lease lasts.
        redeliver: (to, stalled) =>
          simulateDelivery(to, stalled, { secret: SECRET, timeScale: 0.01 }),
      });
      expect(answer).toBe("network error");
      expect(report.delivered).toBe(true);
      const reader = await openSqliteDatabase(database, { driver: DRIVER });
      const written = reader
        .all<{ worker: string }>("SELECT worker FROM effects WHERE event_key = ? ORDER BY id", [
          key,
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
          reader.get("SELECT status, attempts FROM mappa_webhooks_events WHERE key = ?", [key]),
        ).toEqual({ status: "done", attempts: 1 });
      }
      // A later duplicate runs nothing more.
      const again = await deliver(url, event);
      expect(again).toEqual({ status: 200, body: { received: true, duplicate: true } });
      expect(reader.all("SELECT worker FROM effects WHERE event_key = ?", [key])).toHaveLength(
        effects.length,
      );
      reader.close();
      await rescuer.kill();
    });
  },
);
