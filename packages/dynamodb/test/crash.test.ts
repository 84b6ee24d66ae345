import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { createTestEvent, simulateDelivery } from "@mappa-webhooks/testing";
import { type Child, crashAfterEffect } from "@mappa-webhooks/tooling/test-helpers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  clientOf,
  createTestTable,
  deliver,
  effectsOf,
  keyOf,
  type LocalDynamoDb,
  SECRET,
  startDynalite,
  startFixture,
  type TestTable,
} from "./helpers.js";

let local: LocalDynamoDb;
let client: DynamoDBClient;
const children: Child[] = [];
const track = (child: Child) => {
  children.push(child);
  return child;
};
const tables: TestTable[] = [];
beforeAll(async () => {
  local = await startDynalite();
  client = clientOf(local.endpoint);
});
afterAll(async () => {
  await Promise.all(children.map((child) => child.kill("SIGKILL")));
  await Promise.all(tables.map((table) => table.drop()));
  client?.destroy();
  await local?.close();
});

// A receiver is killed with SIGKILL right after its handler wrote the event's effect; a new
// process starts on the same table and Mappa's retry reaches it once the lease has run out.
describe("crash (dynalite): kill -9 after the handler's effect", () => {
  it("the retry runs after the lease: the documented at-least-once", async () => {
    const table = await createTestTable(client, "crash");
    tables.push(table);
    const env = {
      MAPPA_WEBHOOK_SECRET: SECRET,
      DYNAMODB_ENDPOINT: local.endpoint,
      TABLE_NAME: table.tableName,
      PORT: "0",
      LEASE_MS: "1000",
    };
    const { answer, event, key, report, recoveryMs, rescuer, url } = await crashAfterEffect({
      start: (instance) => track(startFixture("receiver.mjs", { ...env, INSTANCE: instance })),
      event: createTestEvent("report.completed"),
      keyOf,
      deliver,
      // Mappa's retries at 1/100 of its schedule: 409 while the dead claim's lease lasts.
      redeliver: (to, stalled) =>
        simulateDelivery(to, stalled, { secret: SECRET, timeScale: 0.01 }),
    });
    expect(answer).toBe("network error");
    expect(report.delivered).toBe(true);
    const written = await effectsOf(client, table.tableName, key);
    console.log(
      `[crash] ${JSON.stringify({ store: "dynamodb (dynalite)", effects: written, retryAnswers: report.attempts.map((a) => a.status ?? a.errorCode), recoveryMs })}`,
    );
    expect(written).toEqual(["doomed", "rescuer"]);
    expect(await deliver(url, event)).toEqual({
      status: 200,
      body: { received: true, duplicate: true },
    });
    expect(await effectsOf(client, table.tableName, key)).toEqual(["doomed", "rescuer"]);
    await rescuer.kill();
  });
});
