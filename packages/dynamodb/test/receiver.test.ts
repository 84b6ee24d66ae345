import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { createMappaRecovery, type MappaEvent } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDynamoDbIdempotencyStore, type DynamoDbIdempotencyStore } from "../src/index.js";
import {
  clientOf,
  createTestTable,
  deliver,
  keyOf,
  type LocalDynamoDb,
  SECRET,
  startDynalite,
  type TestTable,
} from "./helpers.js";
import { type RunningReceiver, startReceiver } from "./receiver.js";

let local: LocalDynamoDb;
let client: DynamoDBClient;
let table: TestTable;
let store: DynamoDbIdempotencyStore;
let receiver: RunningReceiver;
/** Every run of the handler, by idempotency key. */
const runs: string[] = [];
/** Keys whose handler fails on its first run. */
const failFirst = new Set<string>();

beforeAll(async () => {
  local = await startDynalite();
  client = clientOf(local.endpoint);
  table = await createTestTable(client, "receiver");
  store = createDynamoDbIdempotencyStore({ client, tableName: table.tableName });
  const handle = async (event: MappaEvent) => {
    const key = event.idempotencyKey as string;
    runs.push(key);
    if (failFirst.delete(key)) throw new Error(`transient failure of ${key}`);
  };
  receiver = await startReceiver({
    secret: SECRET,
    idempotency: store,
    logger: false,
    on: { "report.completed": handle, "report.failed": handle },
  });
});
afterAll(async () => {
  await receiver?.close();
  await table?.drop();
  client?.destroy();
  await local?.close();
});

const runsOf = (key: string) => runs.filter((each) => each === key);

describe("createMappaWebhooks with the DynamoDB store, over HTTP", () => {
  it("handles a delivery once and answers its duplicate as such", async () => {
    const event = createTestEvent("report.completed");
    const first = await deliver(receiver.url, event);
    expect(first).toEqual({ status: 200, body: { received: true } });
    const again = await deliver(receiver.url, event);
    expect(again).toEqual({ status: 200, body: { received: true, duplicate: true } });
    // Another delivery of the same job outcome (a new event id) is the same event.
    const redelivered = await deliver(receiver.url, { ...event, id: `${event.id}_again` });
    expect(redelivered.body).toEqual({ received: true, duplicate: true });
    expect(runsOf(keyOf(event))).toHaveLength(1);
  });

  it("runs a failing handler again on the retry, then answers duplicates", async () => {
    const event = createTestEvent("report.failed");
    failFirst.add(keyOf(event));
    const failed = await deliver(receiver.url, event);
    expect(failed.status).toBe(500);
    expect(failed.body).toEqual({ error: "handler_failed" });
    const retried = await deliver(receiver.url, event);
    expect(retried).toEqual({ status: 200, body: { received: true } });
    expect(runsOf(keyOf(event))).toHaveLength(2);
    const again = await deliver(receiver.url, event);
    expect(again.body).toEqual({ received: true, duplicate: true });
    expect(runsOf(keyOf(event))).toHaveLength(2);
  });

  it("runs the handler once for 8 concurrent copies of one event", async () => {
    const event = createTestEvent("report.completed");
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => deliver(receiver.url, event)),
    );
    for (const { status } of answers) expect([200, 409]).toContain(status);
    expect(runsOf(keyOf(event))).toHaveLength(1);
  });

  it("answers 503 idempotency_store_failed when the table is gone", async () => {
    const missing = createDynamoDbIdempotencyStore({ client, tableName: "no-such-table" });
    const broken = await startReceiver({ secret: SECRET, idempotency: missing, logger: false });
    try {
      const answer = await deliver(broken.url, createTestEvent("report.completed"));
      expect(answer).toEqual({ status: 503, body: { error: "idempotency_store_failed" } });
    } finally {
      await broken.close();
    }
  });

  it("is accepted by createMappaRecovery, which tracks in the table", async () => {
    const recovery = createMappaRecovery({
      secret: SECRET,
      idempotency: store,
      fetchJob: async (jobId) => ({ id: jobId, status: "running" }),
    });
    const event = createTestEvent("report.completed");
    await recovery.track(event.data.jobId);
    expect((await store.tracked({ limit: 100 })).map((job) => job.jobId)).toContain(
      event.data.jobId,
    );
    // The webhook's handled outcome untracks the job.
    expect((await deliver(receiver.url, event)).status).toBe(200);
    expect((await store.tracked({ limit: 100 })).map((job) => job.jobId)).not.toContain(
      event.data.jobId,
    );
  });
});
