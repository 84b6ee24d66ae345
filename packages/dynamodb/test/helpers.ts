// dynalite (an in-memory DynamoDB on LevelDB's memory-level) in this test process, on
// 127.0.0.1 port 0, with dummy credentials and region "local": what the tests talk to.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { DeleteTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { parseEvent } from "@mappa-webhooks/core";
import { type Child, startProcess } from "@mappa-webhooks/tooling/test-helpers";
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

/** Starts `node test/fixtures/<script>` with `env` added to this process's environment. */
export function startFixture(script: string, env: Record<string, string>): Child {
  if (!existsSync(new URL("../dist/index.js", import.meta.url))) {
    throw new Error(
      "../dist/index.js is missing: build first (pnpm --filter @mappa-webhooks/dynamodb run build).",
    );
  }
  const path = new URL(`./fixtures/${script}`, import.meta.url).pathname;
  return startProcess({ args: [path], env: { ...process.env, ...env }, label: script });
}

/** Resolves the webhook URL a child printed as `listening on http://127.0.0.1:<port>`. */
export async function webhookUrlOf(child: Child, timeoutMs = 30_000): Promise<string> {
  const [, base] = await child.waitForLine(/listening on (http:\/\/127\.0\.0\.1:\d+)/, timeoutMs);
  return `${base}/webhooks/mappa`;
}

/** POSTs `event` once, signed with {@link SECRET}; resolves the status and parsed JSON body. */
export async function deliver(
  url: string,
  event: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const { signPayload } = await import("@mappa-webhooks/testing");
  const payload = JSON.stringify(event);
  const signature = await signPayload({ payload, secret: SECRET });
  const response = await fetch(url, {
    method: "POST",
    body: payload,
    headers: { "content-type": "application/json", "mappa-signature": signature },
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The idempotency key the core derives for `event`. */
export function keyOf(event: unknown): string {
  const key = parseEvent(JSON.stringify(event)).idempotencyKey;
  if (key === undefined) throw new Error("test event without an idempotency key");
  return key;
}

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
