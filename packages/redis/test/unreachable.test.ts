import { createServer, type Server, type Socket } from "node:net";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { createRedisIdempotencyStore } from "../src/index.js";
import { SECRET, startNodeReceiver, waitFor } from "./helpers.js";

const cleanups: Array<() => unknown> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A port nothing listens on: bind one, then close it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A TCP server that accepts connections and never answers: a Redis that hangs. */
async function blackHole(): Promise<{ port: number; server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as { port: number }).port, server, sockets };
}

async function deliver(url: string) {
  const body = JSON.stringify(createTestEvent("report.completed"));
  const signature = await signPayload({ payload: body, secret: SECRET });
  const started = performance.now();
  const response = await fetch(url, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", "mappa-signature": signature },
  });
  return {
    status: response.status,
    body: (await response.json()) as { error?: string },
    ms: performance.now() - started,
  };
}

describe("Redis unreachable", () => {
  it("answers 503 at once over HTTP when nothing listens on the Redis port", async () => {
    // ioredis' defaults: the offline queue is on and it retries each command 20 times, so
    // without the store's own check a request would hang for many seconds.
    const client = new Redis({ host: "127.0.0.1", port: await closedPort() });
    client.on("error", () => {});
    cleanups.push(() => client.disconnect());
    const errors: string[] = [];
    let handled = 0;
    const receiver = await startNodeReceiver({
      secret: SECRET,
      idempotency: createRedisIdempotencyStore({ client, timeoutMs: 1000 }),
      on: { "report.completed": () => void handled++ },
      onError: (error) => void errors.push(error.message),
    });
    cleanups.push(() => receiver.close());

    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await deliver(receiver.url));
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.body).toEqual({ error: "idempotency_store_failed" });
      expect(answer.ms).toBeLessThan(1500);
    }
    expect(handled).toBe(0);
    expect(errors[0]).toMatch(/^@mappa-webhooks: Redis idempotency store: .*Mappa retries/);
    console.log(
      `[redis-unreachable] closed port: ${answers.map((a) => `${a.status} in ${Math.round(a.ms)} ms`).join(", ")}`,
    );
  });

  it("answers 503 within timeoutMs when Redis accepts the connection but never answers", async () => {
    const hole = await blackHole();
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const socket of hole.sockets) socket.destroy();
          hole.server.close(() => resolve());
        }),
    );
    const client = new Redis({ host: "127.0.0.1", port: hole.port });
    client.on("error", () => {});
    cleanups.push(() => client.disconnect());
    await waitFor(() => hole.sockets.size > 0, 5000);
    let handled = 0;
    const receiver = await startNodeReceiver({
      secret: SECRET,
      idempotency: createRedisIdempotencyStore({ client, timeoutMs: 300 }),
      on: { "report.completed": () => void handled++ },
    });
    cleanups.push(() => receiver.close());

    const answer = await deliver(receiver.url);
    expect(answer.status).toBe(503);
    expect(answer.body).toEqual({ error: "idempotency_store_failed" });
    expect(answer.ms).toBeGreaterThanOrEqual(250);
    expect(answer.ms).toBeLessThan(1500);
    expect(handled).toBe(0);
    console.log(`[redis-unreachable] black hole: ${answer.status} in ${Math.round(answer.ms)} ms`);
  });

  it("answers 503 at once after the client was closed", async () => {
    const client = new Redis({ host: "127.0.0.1", port: 6379, lazyConnect: true });
    client.disconnect();
    await waitFor(() => client.status === "end", 2000);
    const store = createRedisIdempotencyStore({ client });
    await expect(store.claim("evt_closed", { leaseMs: 1000 })).rejects.toMatchObject({
      code: "idempotency_store_failed",
      status: 503,
      message: expect.stringContaining('client status "end"'),
    });
  });
});
