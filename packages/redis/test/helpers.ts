import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createMappaWebhooks,
  type MappaWebhooksOptions,
  readBodyWithLimit,
} from "@mappa-webhooks/core";
import { Redis, type RedisOptions } from "ioredis";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
export const SECRET = "whsec_redis_test_secret";

/** A key prefix no other test run shares, so runs never see each other's keys. */
export function uniquePrefix(name: string): string {
  return `mappa-test:${name}:${process.pid}:${randomBytes(4).toString("hex")}`;
}

export function connect(options: RedisOptions = {}): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: 1, ...options });
}

/** Deletes every key under `prefix` (bounded SCAN; never FLUSHALL). */
export async function deleteKeys(redis: Redis, prefix: string): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  for (let round = 0; round < 10_000; round++) {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    if (keys.length > 0) deleted += await redis.unlink(...keys);
    cursor = next;
    if (cursor === "0") break;
  }
  return deleted;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits until `check` is true, polling every `everyMs`, at most `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

/** A receiver on plain node:http through the core's `handle` (the smallest adapter there is). */
export async function startNodeReceiver(
  options: MappaWebhooksOptions,
): Promise<{ url: string; close(): Promise<void> }> {
  const webhooks = createMappaWebhooks(options);
  const server: Server = createServer(async (req, res) => {
    const rawBody = await readBodyWithLimit(req, webhooks.maxBodyBytes);
    const result = await webhooks.handle({
      method: req.method ?? "GET",
      headers: req.headers,
      rawBody,
    });
    res.writeHead(result.status, result.headers).end(result.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/mappa`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
