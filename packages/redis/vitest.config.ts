import { reporters } from "@mappa-webhooks/tooling/vitest";
import { defineConfig } from "vitest/config";

// Inline projects do not inherit the root's options: each sets its own timeouts and setup.
// Real Redis, real processes and real leases: on a busy machine a test may take many seconds.
const shared = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
  // One PING before anything runs: without Redis, one clear error saying how to start it.
  globalSetup: ["./test/redis-available.ts"],
};

// The tests that use ioredis and BullMQ in this process run once per supported major, with
// `ioredis` and `bullmq` resolved to the aliased installs (devDependencies `ioredis5`,
// `ioredis6`, `bullmq5`, `bullmq6`). "ioredis 6 + bullmq 5" is an app that upgraded ioredis
// while BullMQ 5 keeps its own ioredis 5 inside.
const inProcess = [
  "test/store.test.ts",
  "test/unreachable.test.ts",
  "test/cluster.test.ts",
  "test/queue.test.ts",
  "test/worker-timeout.test.ts",
  "test/options.test.ts",
];
const matrix = [
  { ioredis: 5, bullmq: 5, include: inProcess },
  { ioredis: 6, bullmq: 6, include: inProcess },
  { ioredis: 6, bullmq: 5, include: ["test/queue.test.ts", "test/worker-timeout.test.ts"] },
];

export default defineConfig({
  test: {
    reporters: reporters("redis"),
    ...shared,
    projects: [
      ...matrix.map(({ ioredis, bullmq, include }) => ({
        resolve: { alias: { ioredis: `ioredis${ioredis}`, bullmq: `bullmq${bullmq}` } },
        test: {
          ...shared,
          name: `ioredis ${ioredis} + bullmq ${bullmq}`,
          include,
          env: { EXPECTED_IOREDIS_MAJOR: String(ioredis), EXPECTED_BULLMQ_MAJOR: String(bullmq) },
        },
      })),
      {
        // Receivers and workers in child processes (they load the package's own `ioredis` and
        // `bullmq` devDependencies, the current majors), the HTTP lease tests, and the types.
        test: {
          ...shared,
          name: "processes",
          include: ["test/**/*.test.ts"],
          exclude: inProcess,
          typecheck: {
            enabled: true,
            include: ["test/**/*.test-d.ts"],
            tsconfig: "./tsconfig.json",
          },
        },
      },
    ],
  },
});
