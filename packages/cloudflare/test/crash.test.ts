// kill -9 after the handler's effect: the fixture Worker's handler writes its effect (to a
// Durable Object of the test's own, persisted), prints `wrote <key>` and hangs; the test
// SIGKILLs workerd (then the Node process hosting it), starts a new host on the same persisted
// state and lets Mappa's retries reach it. Neither store makes the effect part of its claim, so
// the outcome is the documented at-least-once: the claim survives the crash, its lease holds
// the retries off (409), then the retry runs the handler again.
import { createTestEvent, simulateDelivery } from "@mappa-webhooks/testing";
import { crashAfterEffect } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECRET } from "./helpers.js";
import { deliver, effectsAt, type FixtureStore, fixtureBundle, keyOf, startHost } from "./host.js";

let bundle: Awaited<ReturnType<typeof fixtureBundle>>;
const hosts: ReturnType<typeof startHost>[] = [];

beforeAll(async () => {
  bundle = await fixtureBundle();
});

afterAll(async () => {
  await Promise.all(hosts.map((host) => host.kill()));
  bundle?.remove();
});

/** Long enough that the new host is up while the dead one's claim still holds (generous). */
const LEASE_MS = 40_000;

describe.each(["durable-object", "d1"] as const)(
  "crash (%s store): kill -9 of workerd after the handler's effect",
  (store: FixtureStore) => {
    it("restart on the persisted state and redelivery: at-least-once after the lease", {
      timeout: 300_000,
    }, async () => {
      const persist = bundle.persistDir(`crash-${store}`);
      const start = (instance: string) => {
        const host = startHost({
          bundle: bundle.path,
          persist,
          store,
          instances: [instance],
          leaseMs: LEASE_MS,
        });
        hosts.push(host);
        return host.view(instance);
      };
      const { answer, event, key, report, recoveryMs, url } = await crashAfterEffect({
        start,
        event: createTestEvent("report.completed"),
        keyOf,
        deliver,
        // Mappa's retries, every 500 ms for up to 90 s: 409 while the dead process's lease lasts.
        redeliver: (to, stalled) =>
          simulateDelivery(to, stalled, {
            secret: SECRET,
            schedule: [0, ...Array.from({ length: 180 }, () => 500)],
          }),
        timeoutMs: 120_000,
      });
      expect(answer).toBe("network error");
      expect(report.delivered).toBe(true);
      const retryAnswers = report.attempts.map((attempt) => attempt.status ?? attempt.errorCode);
      const { effects } = await effectsAt(url);
      const written = effects.filter((effect) => effect.key === key).map((e) => e.worker);
      console.log(
        `[crash] ${JSON.stringify({ store, effects: written, retryAnswers, recoveryMs })}`,
      );
      // The claim and the effect written before the kill are both on disk after it.
      expect(written.sort()).toEqual(["doomed", "rescuer"]);
      expect(retryAnswers[0]).toBe(409);
      expect(retryAnswers.at(-1)).toBe(200);
      expect(retryAnswers.slice(0, -1).every((status) => status === 409)).toBe(true);
      // A later duplicate runs nothing more.
      expect(await deliver(url, event)).toEqual({
        status: 200,
        body: { received: true, duplicate: true },
      });
      const after = await effectsAt(url);
      expect(after.effects.filter((effect) => effect.key === key)).toHaveLength(2);
    });
  },
);
