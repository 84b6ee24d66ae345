// dynalite (an in-memory DynamoDB on LevelDB's memory-level) in this test process, on
// 127.0.0.1 port 0, with dummy credentials and region "local": what the tests talk to.
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { DeleteTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { parseEvent } from "@mappa-webhooks/core";
import { signPayload } from "@mappa-webhooks/testing";
import { storeTestKit } from "@mappa-webhooks/tooling/test-helpers";
import dynalite from "dynalite";
import { ensureTable } from "../src/index.js";

export const SECRET = "whsec_dynamodb_test_secret";
export type { Child } from "@mappa-webhooks/tooling/test-helpers";
export { sleep, waitFor } from "@mappa-webhooks/tooling/test-helpers";

/** A running dynalite and its endpoint. */
export interface LocalDynamoDb {
  endpoint: string;
  close(): Promise<void>;
}

export async function startDynalite(): Promise<LocalDynamoDb> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** A client of `endpoint` (dummy credentials, region "local"). */
export function clientOf(endpoint: string, options: { maxAttempts?: number } = {}): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: "local",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
    ...options,
  });
}

/** A table of its own (ensureTable), and its delete. */
export interface TestTable {
  tableName: string;
  drop(): Promise<void>;
}

export async function createTestTable(client: DynamoDBClient, label: string): Promise<TestTable> {
  const tableName = `mappa-test-${label}-${randomBytes(4).toString("hex")}`;
  await ensureTable({ client, tableName });
  return {
    tableName,
    async drop() {
      await client.send(new DeleteTableCommand({ TableName: tableName })).catch(() => {});
    },
  };
}

/** `startFixture`, `webhookUrlOf`, `deliver` (signed with {@link SECRET}) and `keyOf`. */
export const { startFixture, webhookUrlOf, deliver, keyOf } = storeTestKit({
  testDir: new URL(".", import.meta.url),
  built: ["../dist/index.js"],
  buildHint: "pnpm --filter @mappa-webhooks/dynamodb run build",
  secret: SECRET,
  sign: signPayload,
  parseEvent,
});

/** The workers whose runs wrote `key`'s effect (one item per run), sorted. */
export async function effectsOf(
  client: DynamoDBClient,
  tableName: string,
  key: string,
): Promise<string[]> {
  const { QueryCommand } = await import("@aws-sdk/client-dynamodb");
  const { Items = [] } = await client.send(
    new QueryCommand({
      TableName: tableName,
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": { S: `effect#${key}` } },
      ConsistentRead: true,
    }),
  );
  return Items.map((item) => item.worker?.S ?? "").sort();
}
