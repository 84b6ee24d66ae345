import { DeleteItemCommand, type DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import {
  describeIdempotencyStoreContract,
  describeJobTrackingContract,
  describeRecoveryWithStore,
} from "@mappa-webhooks/conformance";
import { MappaWebhookError } from "@mappa-webhooks/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createDynamoDbIdempotencyStore,
  ensureTable,
  PARTITION_KEY,
  SORT_KEY,
  TTL_ATTRIBUTE,
  tableDefinition,
} from "../src/index.js";
import { clientOf, createTestTable, type LocalDynamoDb, startDynalite } from "./helpers.js";

let local: LocalDynamoDb;
let client: DynamoDBClient;
const clients: DynamoDBClient[] = [];
beforeAll(async () => {
  local = await startDynalite();
  client = clientOf(local.endpoint);
});
afterAll(async () => {
  for (const each of clients) each.destroy();
  client.destroy();
  await local.close();
});

/** A fresh store on a table of its own, with replicas on clients of their own for the races. */
async function freshStore(now?: () => number) {
  const table = await createTestTable(client, "store");
  const options = { tableName: table.tableName, ...(now === undefined ? {} : { now }) };
  return {
    store: createDynamoDbIdempotencyStore({ client, ...options }),
    async replicas(n: number) {
      return Array.from({ length: n }, () => {
        const own = clientOf(local.endpoint);
        clients.push(own);
        return createDynamoDbIdempotencyStore({ client: own, ...options });
      });
    },
    close: () => table.drop(),
  };
}

async function errorOf(promise: Promise<unknown>): Promise<MappaWebhookError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(MappaWebhookError);
  return error as MappaWebhookError;
}

function thrownBy(attempt: () => unknown): MappaWebhookError {
  try {
    attempt();
  } catch (error) {
    expect(error).toBeInstanceOf(MappaWebhookError);
    return error as MappaWebhookError;
  }
  throw new Error("did not throw");
}

describeIdempotencyStoreContract("dynamodb (dynalite), injected clock", async () => {
  let now = Date.now();
  return {
    ...(await freshStore(() => now)),
    advance: (ms) => {
      now += ms;
    },
  };
});

describeIdempotencyStoreContract("dynamodb (dynalite), Date.now", () => freshStore(), {
  clock: "real",
});

describeJobTrackingContract("dynamodb (dynalite)", async () => {
  const now = 1_767_225_600_000;
  return { ...(await freshStore(() => now)), now: () => now };
});

describeJobTrackingContract("dynamodb (dynalite), Date.now", () => freshStore());

describeRecoveryWithStore("dynamodb (dynalite)", async () => {
  const { store, close } = await freshStore();
  return { options: { idempotency: store }, tracking: store, close };
});

describe("createDynamoDbIdempotencyStore", () => {
  it("stores a completed mark with expiresAt (ms) and the TTL attribute (s), never before it", async () => {
    const { store, close } = await freshStore(() => 1_767_225_600_123);
    try {
      const claim = await store.claim("evt_item", { leaseMs: 60_000 });
      if (claim.status !== "claimed") throw new Error(claim.status);
      await store.complete("evt_item", claim.token, { ttlMs: 3_600_000 });
      const { Item } = await client.send(
        new GetItemCommand({
          TableName: store.tableName,
          Key: { [PARTITION_KEY]: { S: "event#evt_item" }, [SORT_KEY]: { S: "-" } },
          ConsistentRead: true,
        }),
      );
      expect(Item?.status?.S).toBe("completed");
      expect(Item?.token?.S).toBe(claim.token);
      expect(Item?.expiresAt?.N).toBe(String(1_767_225_600_123 + 3_600_000));
      expect(Item?.[TTL_ATTRIBUTE]?.N).toBe(
        String(Math.ceil((1_767_225_600_123 + 3_600_000) / 1000)),
      );
    } finally {
      await close();
    }
  });

  it("takes a completed mark past its TTL that DynamoDB has not deleted yet", async () => {
    let now = 1_767_225_600_000;
    const { store, close } = await freshStore(() => now);
    try {
      const claim = await store.claim("evt_lazy_ttl", { leaseMs: 60_000 });
      if (claim.status !== "claimed") throw new Error(claim.status);
      await store.complete("evt_lazy_ttl", claim.token, { ttlMs: 1000 });
      now += 999;
      expect(await store.claim("evt_lazy_ttl", { leaseMs: 60_000 })).toEqual({
        status: "completed",
      });
      now += 1; // The item is still there (dynalite has no TTL; DynamoDB deletes within days).
      expect((await store.claim("evt_lazy_ttl", { leaseMs: 60_000 })).status).toBe("claimed");
    } finally {
      await close();
    }
  });

  it("claims again when the holder's item is deleted between the failed write and the read", async () => {
    // The holder's release lands between the claim's failed condition and its read: the store
    // must not report in_flight for a free key. Simulated by deleting it from outside.
    const { store, close } = await freshStore();
    try {
      const first = await store.claim("evt_gone", { leaseMs: 60_000 });
      expect(first.status).toBe("claimed");
      await client.send(
        new DeleteItemCommand({
          TableName: store.tableName,
          Key: { [PARTITION_KEY]: { S: "event#evt_gone" }, [SORT_KEY]: { S: "-" } },
        }),
      );
      expect((await store.claim("evt_gone", { leaseMs: 60_000 })).status).toBe("claimed");
    } finally {
      await close();
    }
  });

  it("keeps event keys and job ids apart from each other and case-sensitive", async () => {
    const { store, close } = await freshStore();
    try {
      expect((await store.claim("evt_Case", { leaseMs: 60_000 })).status).toBe("claimed");
      expect((await store.claim("evt_case", { leaseMs: 60_000 })).status).toBe("claimed");
      await store.track("tracked");
      expect((await store.claim("tracked", { leaseMs: 60_000 })).status).toBe("claimed");
      expect((await store.tracked({ limit: 10 })).map((job) => job.jobId)).toEqual(["tracked"]);
    } finally {
      await close();
    }
  });

  it("answers 503 idempotency_store_failed, naming the fix, when the table is missing", async () => {
    const store = createDynamoDbIdempotencyStore({ client, tableName: "missing-table" });
    const error = await errorOf(store.claim("evt_x", { leaseMs: 1000 }));
    expect(error.code).toBe("idempotency_store_failed");
    expect(error.status).toBe(503);
    expect(error.message).toMatch(/^@mappa-webhooks\/dynamodb: /);
    expect(error.message).toContain("missing-table");
    expect(error.message).toContain("ensureTable");
    const tracking = await errorOf(store.tracked({ limit: 1 }));
    expect(tracking.code).toBe("idempotency_store_failed");
  });

  it("answers 503 idempotency_store_failed when nothing answers at the endpoint", async () => {
    const dead = clientOf("http://127.0.0.1:1", { maxAttempts: 1 });
    try {
      const store = createDynamoDbIdempotencyStore({ client: dead, tableName: "mappa-webhooks" });
      const error = await errorOf(store.claim("evt_x", { leaseMs: 1000 }));
      expect(error.code).toBe("idempotency_store_failed");
      expect(error.status).toBe(503);
      expect(error.message).toMatch(/endpoint/);
    } finally {
      dead.destroy();
    }
  });

  it("answers 503 after timeoutMs when DynamoDB does not answer", async () => {
    const { createServer } = await import("node:http");
    const silent = createServer(() => {}); // Accepts, never answers.
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", () => resolve()));
    const { port } = silent.address() as import("node:net").AddressInfo;
    const stalled = clientOf(`http://127.0.0.1:${port}`, { maxAttempts: 1 });
    try {
      const store = createDynamoDbIdempotencyStore({
        client: stalled,
        tableName: "mappa-webhooks",
        timeoutMs: 200,
      });
      const error = await errorOf(store.claim("evt_x", { leaseMs: 1000 }));
      expect(error.code).toBe("idempotency_store_failed");
      expect(error.message).toContain("within 200 ms");
    } finally {
      stalled.destroy();
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it("refuses keys DynamoDB cannot store, as idempotency_store_failed", async () => {
    const store = createDynamoDbIdempotencyStore({ client, tableName: "mappa-webhooks" });
    expect((await errorOf(store.claim("", { leaseMs: 1000 }))).code).toBe(
      "idempotency_store_failed",
    );
    expect((await errorOf(store.claim("x".repeat(2001), { leaseMs: 1000 }))).message).toMatch(
      /2000 bytes/,
    );
    expect((await errorOf(store.track(""))).code).toBe("idempotency_store_failed");
    expect((await errorOf(store.tracked({ limit: -1 }))).code).toBe("idempotency_store_failed");
  });

  it("rejects bad options with invalid_options naming the fix", () => {
    const cases: Array<[() => unknown, RegExp]> = [
      [() => createDynamoDbIdempotencyStore(undefined as never), /client, tableName/],
      [
        () => createDynamoDbIdempotencyStore({ client: {} as never, tableName: "mappa-webhooks" }),
        /DynamoDBClient/,
      ],
      [() => createDynamoDbIdempotencyStore({ client } as never), /tableName/],
      [() => createDynamoDbIdempotencyStore({ client, tableName: "ab" }), /3 to 255/],
      [() => createDynamoDbIdempotencyStore({ client, tableName: "bad name" }), /tableName/],
      [
        () => createDynamoDbIdempotencyStore({ client, tableName: "mappa-webhooks", timeoutMs: 0 }),
        /timeoutMs/,
      ],
      [
        () =>
          createDynamoDbIdempotencyStore({
            client,
            tableName: "mappa-webhooks",
            now: 5 as never,
          }),
        /now/,
      ],
      [() => tableDefinition(""), /tableName/],
    ];
    for (const [attempt, message] of cases) {
      const error = thrownBy(attempt);
      expect(error.code).toBe("invalid_options");
      expect(error.message).toMatch(/^@mappa-webhooks\/dynamodb: /);
      expect(error.message).toMatch(message);
    }
  });
});

describe("ensureTable", () => {
  it("creates the table once, then finds it (and says TTL is unsupported on dynalite)", async () => {
    const tableName = `mappa-ensure-${Date.now().toString(36)}`;
    expect(await ensureTable({ client, tableName })).toEqual({
      created: true,
      timeToLive: "unsupported",
    });
    expect(await ensureTable({ client, tableName })).toEqual({
      created: false,
      timeToLive: "unsupported",
    });
  });

  it("refuses a table with another key schema", async () => {
    const { CreateTableCommand } = await import("@aws-sdk/client-dynamodb");
    const tableName = `mappa-other-${Date.now().toString(36)}`;
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        AttributeDefinitions: [{ AttributeName: "id", AttributeType: "S" }],
        KeySchema: [{ AttributeName: "id", KeyType: "HASH" }],
        BillingMode: "PAY_PER_REQUEST",
      }),
    );
    const error = await errorOf(ensureTable({ client, tableName }));
    expect(error.code).toBe("invalid_options");
    expect(error.message).toMatch(/key schema/);
  });

  it("rejects bad options with invalid_options", async () => {
    expect((await errorOf(ensureTable(undefined as never))).code).toBe("invalid_options");
    expect(await errorOf(ensureTable({ client, tableName: "" }))).toMatchObject({
      code: "invalid_options",
    });
  });
});
