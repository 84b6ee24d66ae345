// The core's memory store keeps the shared IdempotencyStore contract: once on a clock the test
// moves (exact boundaries), once on the real clock (the same path server-side stores take).
// It runs here rather than in packages/core: this package depends on the core, not the reverse.
import { createMemoryIdempotencyStore } from "@mappa-webhooks/core";
import {
  describeIdempotencyStoreContract,
  describeJobTrackingContract,
  describeRecoveryWithStore,
} from "../src/index.js";

describeIdempotencyStoreContract("memory (core)", async () => {
  let now = 1_000_000;
  return {
    store: createMemoryIdempotencyStore({ now: () => now }),
    advance: (ms) => {
      now += ms;
    },
  };
});

describeIdempotencyStoreContract(
  "memory (core), on the real clock",
  async () => ({ store: createMemoryIdempotencyStore() }),
  { clock: "real" },
);

describeJobTrackingContract("memory (core)", async () => {
  const now = 1_767_225_600_000;
  return { store: createMemoryIdempotencyStore({ now: () => now }), now: () => now };
});

describeJobTrackingContract("memory (core), on the real clock", async () => ({
  store: createMemoryIdempotencyStore(),
}));

describeRecoveryWithStore("memory (core)", async () => {
  const store = createMemoryIdempotencyStore();
  return { options: { idempotency: store }, tracking: store };
});
