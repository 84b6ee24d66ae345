import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cluster, Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisIdempotencyStore } from "../src/index.js";
import { waitFor } from "./helpers.js";

// A real three-master Redis Cluster, started from the same `redis-server` binary as the
// test Redis (no persistence, a temporary directory, ports picked free).
const NODES = 3;
const SLOTS = 16384;
const dir = mkdtempSync(join(tmpdir(), "mappa-redis-cluster-"));
const servers: ChildProcess[] = [];
const ports: number[] = [];
let clients: Cluster[] = [];
let spawnError: Error | undefined;

async function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}

/** A port whose cluster bus port (+10000) is free too. */
async function freeClusterPort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 25_000);
    if (ports.includes(port)) continue;
    if ((await isFree(port)) && (await isFree(port + 10_000))) return port;
  }
  throw new Error("no free port pair for a cluster node");
}

beforeAll(async () => {
  for (let i = 0; i < NODES; i++) {
    const port = await freeClusterPort();
    ports.push(port);
    const server = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        `nodes-${port}.conf`,
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
      ],
      { stdio: "ignore" },
    );
    server.once("error", (error) => {
      spawnError = new Error(`could not start redis-server for the cluster test: ${error.message}`);
    });
    servers.push(server);
  }
  // A node is up once its port is taken.
  for (const port of ports) {
    await waitFor(
      async () => {
        if (spawnError !== undefined) throw spawnError;
        return !(await isFree(port));
      },
      30_000,
      50,
    );
  }
  const admins = ports.map((port) => new Redis({ port, host: "127.0.0.1" }));
  try {
    await Promise.all(admins.map((admin) => admin.ping()));
    const per = Math.ceil(SLOTS / NODES);
    await Promise.all(
      admins.map((admin, i) =>
        admin.call(
          "CLUSTER",
          "ADDSLOTSRANGE",
          String(i * per),
          String(Math.min(SLOTS, (i + 1) * per) - 1),
        ),
      ),
    );
    for (const port of ports.slice(1))
      await admins[0]?.call("CLUSTER", "MEET", "127.0.0.1", String(port));
    await waitFor(
      async () =>
        (await Promise.all(admins.map((admin) => admin.call("CLUSTER", "INFO")))).every((info) =>
          String(info).includes("cluster_state:ok"),
        ),
      60_000,
      100,
    );
  } finally {
    for (const admin of admins) admin.disconnect();
  }
}, 120_000);

afterAll(async () => {
  for (const client of clients) client.disconnect();
  await Promise.all(
    servers.map(
      (server) =>
        new Promise<void>((resolve) => {
          if (server.exitCode !== null) return resolve();
          server.once("exit", () => resolve());
          server.kill("SIGTERM");
        }),
    ),
  );
  rmSync(dir, { recursive: true, force: true });
});

describe("Redis Cluster", () => {
  it("claims each event exactly once across 10 Cluster clients, keys spread over every master", async () => {
    clients = Array.from(
      { length: 10 },
      () => new Cluster([{ host: "127.0.0.1", port: ports[0] as number }]),
    );
    await Promise.all(clients.map((client) => client.ping()));
    const stores = clients.map((client) =>
      createRedisIdempotencyStore({ client, prefix: "cluster-test" }),
    );
    const KEYS = 150;
    let exactlyOne = 0;
    let completed = 0;
    const slots = new Set<number>();
    for (let i = 0; i < KEYS; i++) {
      const key = `evt_cluster_${i}`;
      const results = await Promise.all(
        stores.map((store) => store.claim(key, { leaseMs: 10_000 })),
      );
      const winners = results.filter((result) => result.status === "claimed");
      if (winners.length === 1) exactlyOne++;
      const winner = winners[0];
      if (winner?.status === "claimed")
        // Kept past the loop, so DBSIZE below counts every key however slow the machine is.
        await stores[0]?.complete(key, winner.token, { ttlMs: 600_000 });
      if ((await stores[9]?.claim(key, { leaseMs: 1000 }))?.status === "completed") completed++;
      // The hash tag: the store's key lives in the event key's slot.
      const slot = Number(
        await clients[0]?.call("CLUSTER", "KEYSLOT", stores[0]?.keyFor(key) as string),
      );
      expect(slot).toBe(Number(await clients[0]?.call("CLUSTER", "KEYSLOT", key)));
      slots.add(slot);
    }
    const keysPerMaster = await Promise.all(
      (clients[0] as Cluster).nodes("master").map((node) => node.dbsize()),
    );
    console.log(
      `[cluster] ${JSON.stringify({ masters: NODES, keys: KEYS, exactlyOne, completed, distinctSlots: slots.size, keysPerMaster })}`,
    );
    expect(exactlyOne).toBe(KEYS);
    expect(completed).toBe(KEYS);
    expect(keysPerMaster).toHaveLength(NODES);
    for (const count of keysPerMaster) expect(count).toBeGreaterThan(KEYS / NODES / 2);
  });

  it("tracks jobs on a Cluster: both tracking keys in one slot, seen by every client", async () => {
    const stores = clients.map((client) =>
      createRedisIdempotencyStore({ client, prefix: "cluster-tracking" }),
    );
    const first = stores[0] as (typeof stores)[number];
    const { ids, trackedAt } = first.trackingKeys;
    expect(Number(await clients[0]?.call("CLUSTER", "KEYSLOT", ids))).toBe(
      Number(await clients[0]?.call("CLUSTER", "KEYSLOT", trackedAt)),
    );
    const jobIds = Array.from(
      { length: 30 },
      (_, i) => `job_cluster_${String(i).padStart(2, "0")}`,
    );
    await Promise.all(
      jobIds.map((jobId, i) => stores[i % stores.length]?.track(jobId, { trackedAt: i })),
    );
    const listed = await stores[9]?.tracked({ limit: 100 });
    expect(listed?.map((job) => job.jobId)).toEqual(jobIds);
    await Promise.all(jobIds.map((jobId, i) => stores[(i + 3) % stores.length]?.untrack(jobId)));
    expect(await first.tracked({ limit: 100 })).toEqual([]);
  });
});
