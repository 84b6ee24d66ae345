import { type DynamoDBClient, ScanCommand } from "@aws-sdk/client-dynamodb";
import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import { createDeliverySimulator, createTestEvent } from "@mappa-webhooks/testing";
import { expectSoakExactlyOnce, runStoreSoak } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, beforeAll, describe, it } from "vitest";
import {
  clientOf,
  createTestTable,
  keyOf,
  type LocalDynamoDb,
  SECRET,
  startDynalite,
  startFixture,
  type TestTable,
} from "./helpers.js";

// Two receiver processes share one table. 300 events are delivered concurrently, 30% of them
// twice (20% at the same moment to both processes, 10% again after the first delivery was
// answered), and 20% fail their first handler attempt. With no crash, every event's effect
// must exist exactly once. The driver is the shared one (runStoreSoak); what is DynamoDB's is here.
const EVENTS = 300;
let local: LocalDynamoDb;
let client: DynamoDBClient;
let table: TestTable | undefined;
beforeAll(async () => {
  local = await startDynalite();
  client = clientOf(local.endpoint);
});
afterAll(async () => {
  await table?.drop();
  client?.destroy();
  await local?.close();
});

/** Every item of the table whose pk starts with `prefix`. */
async function itemsOf(scanner: DynamoDBClient, tableName: string, prefix: string) {
  const items: Array<Record<string, { S?: string }>> = [];
  let start: Record<string, never> | undefined;
  do {
    const page = await scanner.send(
      new ScanCommand({
        TableName: tableName,
        FilterExpression: "begins_with(pk, :prefix)",
        ExpressionAttributeValues: { ":prefix": { S: prefix } },
        ...(start === undefined ? {} : { ExclusiveStartKey: start }),
      }),
    );
    items.push(...((page.Items ?? []) as typeof items));
    start = page.LastEvaluatedKey as typeof start;
  } while (start !== undefined);
  return items;
}

describe("soak (dynalite): two receiver processes on one table", () => {
  it("records every event's effect exactly once under duplicates and transient failures", {
    timeout: 400_000,
  }, async () => {
    table = await createTestTable(client, "soak");
    const { tableName } = table;
    const env = {
      MAPPA_WEBHOOK_SECRET: SECRET,
      DYNAMODB_ENDPOINT: local.endpoint,
      TABLE_NAME: tableName,
      PORT: "0",
    };
    const result = await runStoreSoak({
      label: { store: "dynamodb (dynalite)" },
      events: EVENTS,
      createEvent: (index, data) =>
        createTestEvent(MAPPA_EVENT_TYPES[index % MAPPA_EVENT_TYPES.length] as string, { data }),
      keyOf,
      startReceiver: (instance) => startFixture("receiver.mjs", { ...env, INSTANCE: instance }),
      createDeliverySimulator,
      secret: SECRET,
      lanes: 8,
      deadlineMs: 300_000,
      measure: async () => ({
        effects: (await itemsOf(client, tableName, "effect#")).map((item) => ({
          key: (item.pk?.S ?? "").slice("effect#".length),
          worker: item.worker?.S ?? "?",
        })),
        handlersFailingOnce: (await itemsOf(client, tableName, "first#")).length,
      }),
    });
    expectSoakExactlyOnce(result, EVENTS);
  });
});
