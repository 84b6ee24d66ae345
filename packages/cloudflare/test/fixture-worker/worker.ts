// The receiver of the crash and soak tests: the Hono adapter on the Durable Object store or the
// D1 store (STORE), with handlers whose effects are written to a Durable Object of the test's
// own (EffectLog), outside the idempotency store, as an effect on another system would be.
// - An event with `data.failFirst` throws on its very first attempt across all Workers (the
//   EffectLog decides, atomically);
// - an event whose `data.stallOn` names this Worker's INSTANCE writes its effect, prints
//   `wrote <key>` and hangs (bounded) until the test kills the process.
// GET /effects answers every effect written and how many first attempts failed.
import { MAPPA_EVENT_TYPES, type MappaEvent } from "@mappa-webhooks/core";
import { mappaWebhook } from "@mappa-webhooks/hono";
import { Hono, type MiddlewareHandler } from "hono";
import {
  createD1IdempotencyStore,
  createDurableObjectIdempotencyStore,
  type D1DatabaseLike,
  type DurableObjectNamespaceLike,
  type DurableObjectStateLike,
} from "../../src/index.js";

export { MappaIdempotencyObject } from "../../src/index.js";

interface Env {
  MAPPA_IDEMPOTENCY: DurableObjectNamespaceLike;
  EFFECTS: DurableObjectNamespaceLike;
  DB: D1DatabaseLike;
  SECRET: string;
  INSTANCE: string;
  STORE: "durable-object" | "d1";
  LEASE_MS: string;
}

type EffectCall =
  | { op: "record"; key: string; worker: string }
  | { op: "first"; key: string }
  | { op: "list" };

/** The test's record of effects: one instance, one call at a time, in persisted storage. */
export class EffectLog {
  readonly #storage: DurableObjectStateLike["storage"];
  constructor(state: DurableObjectStateLike) {
    this.#storage = state.storage;
  }

  async fetch(request: Request): Promise<Response> {
    const call = (await request.json()) as EffectCall;
    switch (call.op) {
      case "record": {
        await this.#storage.put({ [`e:${call.key}:${crypto.randomUUID()}`]: call.worker });
        return Response.json(null);
      }
      case "first": {
        const marker = `f:${call.key}`;
        if ((await this.#storage.get(marker)) !== undefined) return Response.json(false);
        await this.#storage.put({ [marker]: true });
        return Response.json(true);
      }
      case "list": {
        const effects: { key: string; worker: string }[] = [];
        let failedFirst = 0;
        let startAfter: string | undefined;
        for (let page = 0; page < 100; page++) {
          const rows = await this.#storage.list<string | boolean>({
            limit: 1000,
            ...(startAfter === undefined ? {} : { startAfter }),
          });
          for (const [name, value] of rows) {
            if (name.startsWith("f:")) failedFirst++;
            else effects.push({ key: name.slice(2, name.lastIndexOf(":")), worker: String(value) });
          }
          if (rows.size < 1000) break;
          startAfter = [...rows.keys()].pop();
        }
        return Response.json({ effects, failedFirst });
      }
    }
  }
}

async function effectLog<T>(env: Env, call: EffectCall): Promise<T> {
  const stub = env.EFFECTS.get(env.EFFECTS.idFromName("effects") as never);
  const res = await stub.fetch("https://effects/", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(call),
  });
  if (!res.ok) throw new Error(`the effect log answered ${res.status}`);
  return JSON.parse(await res.text()) as T;
}

const app = new Hono<{ Bindings: Env }>();
let receiver: MiddlewareHandler | undefined;

app.all("/webhooks/mappa", (c, next) => {
  const env = c.env;
  const handle = async (event: MappaEvent) => {
    const key = event.idempotencyKey;
    if (key === undefined) throw new Error("an event without an idempotency key");
    const data = event.data as { failFirst?: boolean; stallOn?: string };
    if (data.failFirst === true && (await effectLog<boolean>(env, { op: "first", key }))) {
      throw new Error(`transient failure on the first attempt of ${key}`);
    }
    await effectLog(env, { op: "record", key, worker: env.INSTANCE });
    if (data.stallOn === env.INSTANCE) {
      console.log(`wrote ${key}`);
      await new Promise((resolve) => setTimeout(resolve, 10 * 60_000));
    }
  };
  receiver ??= mappaWebhook({
    secret: env.SECRET,
    leaseMs: Number(env.LEASE_MS),
    logger: false,
    idempotency:
      env.STORE === "d1"
        ? createD1IdempotencyStore({ database: env.DB })
        : createDurableObjectIdempotencyStore(env.MAPPA_IDEMPOTENCY),
    on: Object.fromEntries(MAPPA_EVENT_TYPES.map((type) => [type, handle])),
  });
  return receiver(c, next);
});

app.get("/effects", async (c) => c.json(await effectLog(c.env, { op: "list" })));

export default app;
