// The soak: two receivers on one store, 1,000 events from Mappa's schedule, 30% delivered twice
// (20% at the same moment to both receivers, 10% again after the first delivery was answered),
// 20% failing their first handler attempt; every event's effect must exist exactly once. The
// driver is the shared one (runStoreSoak); what is Cloudflare's is here.
//
// Durable Object store: two receiver processes, each a Node process hosting its own workerd.
// Process a holds the object (and the test's effect log); process b's Worker binds them by
// script name through Miniflare's dev registry, as `wrangler dev` of two Workers does, so every
// claim of either process goes to the one object instance. D1 store: a D1 database lives in one
// workerd (the dev registry carries Durable Objects and services, not D1), so its two receivers
// are two Workers (two isolates, each with its own socket and module state) in one workerd,
// both bound to the same database, as every isolate of a deployed Worker is.

import { join } from "node:path";
import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import { createDeliverySimulator, createTestEvent } from "@mappa-webhooks/testing";
import {
  type Child,
  expectSoakExactlyOnce,
  runStoreSoak,
} from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECRET } from "./helpers.js";
import { effectsAt, fixtureBundle, keyOf, startHost } from "./host.js";

const EVENTS = Number(process.env.MAPPA_SOAK_EVENTS ?? 1000);

let bundle: Awaited<ReturnType<typeof fixtureBundle>>;
const hosts: ReturnType<typeof startHost>[] = [];

beforeAll(async () => {
  bundle = await fixtureBundle();
});

afterAll(async () => {
  await Promise.all(hosts.map((host) => host.kill()));
  bundle?.remove();
});

const setups = [
  { store: "durable-object", receivers: "two workerd processes (b binds a's object)" },
  { store: "d1", receivers: "two Workers (isolates) in one workerd" },
] as const;

for (const { store, receivers } of setups)
  describe(`soak (${store} store): ${receivers}`, () => {
    it("records every event's effect exactly once under duplicates and transient failures", {
      timeout: 400_000,
    }, async () => {
      const persist = bundle.persistDir(`soak-${store}`);
      const base = { bundle: bundle.path, store, persist } as const;
      const start = (options: Partial<Parameters<typeof startHost>[0]>) => {
        const host = startHost({ ...base, instances: [], ...options });
        hosts.push(host);
        return host;
      };
      let url: string | undefined;
      let shared: ReturnType<typeof startHost> | undefined;
      const startReceiver = (instance: string): Child => {
        if (store === "d1") {
          shared ??= start({ instances: ["a", "b"] });
          return shared.view(instance);
        }
        // Each process on a state of its own: b keeps nothing, it calls a's objects.
        return start({
          instances: [instance],
          owner: instance === "a",
          devRegistry: join(persist, "registry"),
          persist: join(persist, instance),
        }).view(instance);
      };
      const result = await runStoreSoak({
        label: { store, receivers },
        events: EVENTS,
        createEvent: (index, data) =>
          createTestEvent(MAPPA_EVENT_TYPES[index % MAPPA_EVENT_TYPES.length] as string, { data }),
        keyOf,
        startReceiver: (instance) => {
          const child = startReceiver(instance);
          if (instance === "a") {
            child.waitForLine(/listening on (\S+)/, 60_000).then(
              ([, origin]) => {
                url = `${origin}/webhooks/mappa`;
              },
              () => undefined,
            );
          }
          return child;
        },
        createDeliverySimulator,
        secret: SECRET,
        async measure() {
          if (url === undefined) throw new Error("receiver a never listened");
          const { effects, failedFirst } = await effectsAt(url);
          return { effects, handlersFailingOnce: failedFirst };
        },
      });
      expectSoakExactlyOnce(result, EVENTS);
      expect(result.duplicateAnswers200).toBeGreaterThanOrEqual(1);
    });
  });
