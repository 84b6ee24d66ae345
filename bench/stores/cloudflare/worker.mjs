// The Worker of the stores benchmark's Cloudflare variants: the Hono adapter with a no-op
// handler, once per store, in one Worker (one isolate, so one workerd serves all three):
//   /memory/webhooks/mappa          the core's default in-memory store (the workerd baseline)
//   /durable-object/webhooks/mappa  createDurableObjectIdempotencyStore on MAPPA_IDEMPOTENCY
//   /d1/webhooks/mappa              createD1IdempotencyStore on DB
// GET /__bench/stats answers `{ <variant>: { handled, calls, steps } }`: handler runs, the calls
// the store made to its binding (a Durable Object `stub.fetch`, a D1 `batch()` or statement
// `run()` / `all()`: one round trip each), counted here, and by step (claim, complete, untrack,
// ...) `{ calls, ms }`: how long the Worker waited for those calls in all (workerd's clock moves
// on I/O, which is what ends a call, so the sum of whole milliseconds is fair over many calls).
// The secret is the SECRET binding (the bench's own, from ../cloudflare.mjs).
import {
  createD1IdempotencyStore,
  createDurableObjectIdempotencyStore,
} from "@mappa-webhooks/cloudflare";
import { mappaWebhook } from "@mappa-webhooks/hono";
import { Hono } from "hono";

export { MappaIdempotencyObject } from "@mappa-webhooks/cloudflare";

const VARIANTS = ["memory", "durable-object", "d1"];
const stats = Object.fromEntries(
  VARIANTS.map((variant) => [variant, { handled: 0, calls: 0, steps: {} }]),
);

/** Counts one call of `step` and the time until it settles; resolves what `call()` does. */
async function timed(counter, step, call) {
  counter.calls++;
  const started = Date.now();
  try {
    return await call();
  } finally {
    counter.steps[step] ??= { calls: 0, ms: 0 };
    counter.steps[step].calls++;
    counter.steps[step].ms += Date.now() - started;
  }
}

/** The step of a D1 statement the store runs alone, from its SQL (src/d1.ts of the package). */
const d1Step = (sql) =>
  /^INSERT INTO \w+_events/.test(sql)
    ? "complete"
    : /^DELETE FROM \w+_jobs/.test(sql)
      ? "untrack"
      : /^INSERT INTO \w+_jobs/.test(sql)
        ? "track"
        : /^UPDATE/.test(sql)
          ? "renew"
          : /^DELETE FROM \w+_events WHERE key = /.test(sql)
            ? "release"
            : "other";

/** The namespace, its stubs' `fetch` counted. */
function countedNamespace(namespace, counter) {
  return {
    idFromName: (name) => namespace.idFromName(name),
    get: (id) => {
      const stub = namespace.get(id);
      return {
        // The store's RPC body is `{"op":"claim",...}`: the step is its op.
        fetch: (input, init) =>
          timed(counter, /"op":"(\w+)"/.exec(init?.body)?.[1] ?? "other", () =>
            stub.fetch(input, init),
          ),
      };
    },
  };
}

/** The database, its batches and statement runs counted (`bind` keeps the statement counted). */
function countedDatabase(database, counter) {
  const statement = (inner, sql) => ({
    inner,
    sql,
    bind: (...values) => statement(inner.bind(...values), sql),
    run: () => timed(counter, d1Step(sql), () => inner.run()),
    all: () => timed(counter, d1Step(sql), () => inner.all()),
  });
  return {
    prepare: (sql) => statement(database.prepare(sql), sql),
    // The store's batches: the claim (sweep, upsert, holder) and, once, the schema.
    batch: (statements) =>
      timed(counter, /^CREATE/.test(statements[0]?.sql) ? "schema" : "claim", () =>
        database.batch(statements.map((s) => s.inner)),
      ),
  };
}

const storeOf = {
  memory: () => undefined,
  "durable-object": (env) =>
    createDurableObjectIdempotencyStore(
      countedNamespace(env.MAPPA_IDEMPOTENCY, stats["durable-object"]),
    ),
  d1: (env) => createD1IdempotencyStore({ database: countedDatabase(env.DB, stats.d1) }),
};

const app = new Hono();
for (const variant of VARIANTS) {
  // Made on the first request (the bindings are in `env`), then reused by every later one.
  let receiver;
  const handlers = {
    "report.completed": () => {
      stats[variant].handled++;
    },
  };
  app.all(`/${variant}/webhooks/mappa`, (c, next) => {
    if (receiver === undefined) {
      const idempotency = storeOf[variant](c.env);
      receiver = mappaWebhook({
        secret: c.env.SECRET,
        // No log lines: the forged delivery of the start-up check would print one.
        logger: false,
        ...(idempotency === undefined ? {} : { idempotency }),
        on: handlers,
      });
    }
    return receiver(c, next);
  });
}

app.get("/__bench/stats", (c) => c.json(stats));

export default app;
