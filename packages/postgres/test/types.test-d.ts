import { createMappaWebhooks, type IdempotencyStore } from "@mappa-webhooks/core";
import type { MappaExpressOptions } from "@mappa-webhooks/express";
import { Kysely, PostgresDialect } from "kysely";
import pg from "pg";
import { describe, expectTypeOf, it } from "vitest";
import {
  createInbox,
  createInboxWorker,
  createPostgresIdempotencyStore,
  createTransactionalHandlers,
  type PgClientLike,
  type PgPoolLike,
  type PoolClientOf,
  singleClientPool,
} from "../src/index.js";

describe("types", () => {
  const pool = new pg.Pool();

  it("accepts a pg Pool as it is, and gives handlers its PoolClient", () => {
    expectTypeOf(pool).toExtend<PgPoolLike>();
    expectTypeOf<PoolClientOf<pg.Pool>>().toEqualTypeOf<pg.PoolClient>();
    createTransactionalHandlers({
      pool,
      on: {
        "report.completed": (event, client) => {
          expectTypeOf(event.data.reportId).toEqualTypeOf<string>();
          expectTypeOf(client).toEqualTypeOf<pg.PoolClient>();
        },
        "matching.failed": (event) => {
          expectTypeOf(event.data.error.code).toEqualTypeOf<string>();
          // @ts-expect-error a failed matching has no typed matchingId
          expectTypeOf(event.data.matchingId).toEqualTypeOf<string>();
        },
      },
    });
    createInboxWorker({
      pool,
      on: {
        "report.failed": (_event, client) => expectTypeOf(client).toEqualTypeOf<pg.PoolClient>(),
      },
      onUnknown: (event, client) => {
        expectTypeOf(event.data).toEqualTypeOf<unknown>();
        expectTypeOf(client).toEqualTypeOf<pg.PoolClient>();
      },
    });
    // @ts-expect-error a pool is required
    createInbox({});
  });

  it("takes any pool with query and connect, and types handlers with its client", () => {
    interface MyClient extends PgClientLike {
      mine: true;
    }
    const custom = {} as PgPoolLike<MyClient>;
    createTransactionalHandlers({
      pool: custom,
      on: {
        "report.completed": (_event, client) => expectTypeOf(client).toEqualTypeOf<MyClient>(),
      },
    });
  });

  it("plugs into any receiver's options, whatever its context", () => {
    const store = createPostgresIdempotencyStore({ pool });
    expectTypeOf(store).toExtend<IdempotencyStore>();
    const inbox = createInbox({ pool });
    const tx = createTransactionalHandlers({ pool });
    createMappaWebhooks({ secret: "whsec_x", ...inbox.receiverOptions });
    createMappaWebhooks<{ req: Request }>({ secret: "whsec_x", ...tx.receiverOptions });
    const express: MappaExpressOptions = { secret: "whsec_x", ...inbox.receiverOptions };
    expectTypeOf(express).toExtend<MappaExpressOptions>();
  });

  it("hands Kysely a pool that stays inside the transaction", async () => {
    const client = await pool.connect();
    new Kysely<{ t: { id: number } }>({
      dialect: new PostgresDialect({ pool: singleClientPool(client) }),
    });
  });
});
