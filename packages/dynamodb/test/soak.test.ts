import { type DynamoDBClient, ScanCommand } from "@aws-sdk/client-dynamodb";
import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import {
  createDeliverySimulator,
  createTestEvent,
  type DeliveryAttempt,
} from "@mappa-webhooks/testing";
import { runSoakDeliveries } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Child,
  clientOf,
  createTestTable,
  keyOf,
  type LocalDynamoDb,
  SECRET,
  startDynalite,
  startFixture,
  type TestTable,
  webhookUrlOf,
} from "./helpers.js";

// Two receiver processes share one table. 300 events are delivered concurrently, 30% of them
// twice (20% at the same moment to both processes, 10% again after the first delivery was
// answered), and 20% fail their first handler attempt. With no crash, every event's effect
// must exist exactly once.
const EVENTS = 300;
let local: LocalDynamoDb;
let client: DynamoDBClient;
const children: Child[] = [];
let table: TestTable | undefined;
beforeAll(async () => {
  local = await startDynalite();
  client = clientOf(local.endpoint);
});
afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
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
    const env = {
      MAPPA_WEBHOOK_SECRET: SECRET,
      DYNAMODB_ENDPOINT: local.endpoint,
      TABLE_NAME: table.tableName,
      PORT: "0",
    };
    const receivers = ["a", "b"].map((instance) =>
      startFixture("receiver.mjs", { ...env, INSTANCE: instance }),
    );
    children.push(...receivers);
    const urls = [
      await webhookUrlOf(receivers[0] as Child),
      await webhookUrlOf(receivers[1] as Child),
    ] as const;
    const events = Array.from({ length: EVENTS }, (_, index) =>
      createTestEvent(MAPPA_EVENT_TYPES[index % MAPPA_EVENT_TYPES.length] as string, {
        data: { failFirst: index % 5 === 0 },
      }),
    );
    const attempts: DeliveryAttempt[] = [];
    const mappa = createDeliverySimulator({
      secret: SECRET,
      timeScale: 0.002,
      timeoutMs: 30_000,
      onAttempt: (attempt) => void attempts.push(attempt),
    });
    let abandoned = 0;
    const sent = await runSoakDeliveries({
      events,
      urls,
      lanes: 8,
      deadlineMs: 300_000,
      deliver: async (url, event) => {
        const report = await mappa.deliver(url, event);
        if (!report.delivered) abandoned++;
      },
    });
    const perKey = new Map<string, number>(events.map((event) => [keyOf(event), 0]));
    const byProcess: Record<string, number> = {};
    for (const item of await itemsOf(client, table.tableName, "effect#")) {
      const key = (item.pk?.S ?? "").slice("effect#".length);
      perKey.set(key, (perKey.get(key) ?? 0) + 1);
      const worker = item.worker?.S ?? "?";
      byProcess[worker] = (byProcess[worker] ?? 0) + 1;
    }
    const marks = (await itemsOf(client, table.tableName, "first#")).length;
    const answers: Record<string, number> = {};
    for (const attempt of attempts) {
      const label =
        attempt.status === undefined ? (attempt.errorCode ?? "error") : String(attempt.status);
      answers[label] = (answers[label] ?? 0) + 1;
    }
    const counts = [...perKey.values()];
    const result = {
      store: "dynamodb (dynalite)",
      eventsSent: EVENTS,
      duplicatedEvents: sent.duplicatedEvents,
      deliveries: sent.deliveries,
      httpRequests: attempts.length,
      answers,
      handlersFailingOnce: marks,
      effectsRecorded: counts.filter((n) => n === 1).length,
      missing: counts.filter((n) => n === 0).length,
      doubled: counts.filter((n) => n > 1).length,
      effectsByProcess: byProcess,
      abandoned,
      receivedMs: sent.receivedMs,
    };
    console.log(`[soak] ${JSON.stringify(result)}`);
    expect(result.abandoned).toBe(0);
    expect(result.duplicatedEvents).toBe(EVENTS * 0.3);
    expect(result.deliveries).toBe(EVENTS * 1.3);
    expect(result.handlersFailingOnce).toBe(EVENTS / 5);
    expect(result.effectsRecorded).toBe(EVENTS);
    expect(result.missing).toBe(0);
    expect(result.doubled).toBe(0);
    expect(result.answers["500"]).toBe(EVENTS / 5);
    for (const status of Object.keys(result.answers))
      expect(["200", "409", "500"]).toContain(status);
    expect(byProcess.a).toBeGreaterThan(0);
    expect(byProcess.b).toBeGreaterThan(0);
  });
});
