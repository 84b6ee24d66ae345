import { createServer, type Server, type Socket } from "node:net";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { createRedisIdempotencyStore } from "../src/index.js";
import { messageChain, SECRET, startNodeReceiver, waitFor } from "./helpers.js";

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
    // ioredis' offline queue is on and it retries each command 20 times, so without the store's
    // own check a request would wait for the store's timeout. A long reconnect delay keeps the
    // client "reconnecting" for the whole test (between attempts it is briefly "connecting",
    // when a command would wait in the offline queue until timeoutMs).
    const client = new Redis({
      host: "127.0.0.1",
      port: await closedPort(),
      retryStrategy: () => 60_000,
    });
    client.on("error", () => {});
    cleanups.push(() => client.disconnect());
    await waitFor(() => client.status === "reconnecting", 20_000);
    const errors: string[] = [];
    let handled = 0;
    const receiver = await startNodeReceiver({
      secret: SECRET,
      // Far longer than the test's bound below: an answer through the timeout would show.
      idempotency: createRedisIdempotencyStore({ client, timeoutMs: 30_000 }),
      on: { "report.completed": () => void handled++ },
      onError: (error) => void errors.push(messageChain(error)),
    });
    cleanups.push(() => receiver.close());

    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await deliver(receiver.url));
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.body).toEqual({ error: "idempotency_store_failed" });
      expect(answer.ms).toBeLessThan(15_000);
    }
    expect(handled).toBe(0);
    expect(errors).toHaveLength(3);
    for (const error of errors) {
      expect(error).toMatch(
        /@mappa-webhooks: Redis idempotency store: Redis is not connected \(client status "reconnecting"\).*Mappa retries/,
      );
    }
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
    await waitFor(() => hole.sockets.size > 0, 20_000);
    let handled = 0;
    const errors: string[] = [];
    const receiver = await startNodeReceiver({
      secret: SECRET,
      idempotency: createRedisIdempotencyStore({ client, timeoutMs: 1000 }),
      on: { "report.completed": () => void handled++ },
      onError: (error) => void errors.push(messageChain(error)),
    });
    cleanups.push(() => receiver.close());

    const answer = await deliver(receiver.url);
    expect(answer.status).toBe(503);
    expect(answer.body).toEqual({ error: "idempotency_store_failed" });
    // Not before the timeout; and the answer does come (the bound only catches a hang).
    expect(answer.ms).toBeGreaterThanOrEqual(900);
    expect(answer.ms).toBeLessThan(20_000);
    expect(errors[0]).toContain("did not answer the claim of event");
    expect(errors[0]).toContain("within 1000 ms");
    expect(handled).toBe(0);
    console.log(`[redis-unreachable] black hole: ${answer.status} in ${Math.round(answer.ms)} ms`);
  });

  it("answers 503 at once after the client was closed", async () => {
    const client = new Redis({ host: "127.0.0.1", port: 6379, lazyConnect: true });
    client.disconnect();
    await waitFor(() => client.status === "end", 20_000);
    const store = createRedisIdempotencyStore({ client });
    await expect(store.claim("evt_closed", { leaseMs: 1000 })).rejects.toMatchObject({
      code: "idempotency_store_failed",
      status: 503,
      message: expect.stringContaining('client status "end"'),
    });
  });
});
