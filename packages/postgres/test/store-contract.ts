// The contract every IdempotencyStore keeps, as one suite any store runs: claim, lease (expiry
// and renewal), complete, release. Time is a fake clock the store reads (its `now` option), so
// nothing here depends on how fast the machine is.
import type { ClaimResult, IdempotencyStore } from "@mappa-webhooks/core";
import { describe, expect, it } from "vitest";

export interface StoreUnderTest {
  store: IdempotencyStore;
  /** Moves the store's clock forward by `ms`. */
  advance(ms: number): void;
  /** `n` stores sharing the same state through separate connections, for races. */
  replicas?(n: number): Promise<IdempotencyStore[]>;
}

export interface StoreContractOptions {
  /** A store with empty state and a fake clock the test moves. */
  create(): Promise<StoreUnderTest>;
  /** Cleans up after one test. */
  destroy?(subject: StoreUnderTest): Promise<void>;
}

const LEASE = { leaseMs: 10_000 };
const TTL = { ttlMs: 60_000 };

function tokenOf(result: ClaimResult): string {
  if (result.status !== "claimed") throw new Error(`expected a claim, got ${result.status}`);
  return result.token;
}

/**
 * Defines the contract tests for one store implementation.
 *
 * @example
 * ```ts
 * describeStoreContract("memory", {
 *   async create() {
 *     let t = 0;
 *     return { store: createMemoryIdempotencyStore({ now: () => t }), advance: (ms) => (t += ms) };
 *   },
 * });
 * ```
 */
export function describeStoreContract(name: string, options: StoreContractOptions): void {
  const withStore = (test: (subject: StoreUnderTest) => Promise<void>) => async () => {
    const subject = await options.create();
    try {
      await test(subject);
    } finally {
      await options.destroy?.(subject);
    }
  };

  describe(`IdempotencyStore contract: ${name}`, () => {
    it(
      "claims once, answers in_flight while claimed and completed after complete",
      withStore(async ({ store }) => {
        const token = tokenOf(await store.claim("evt_basic", LEASE));
        expect(await store.claim("evt_basic", LEASE)).toEqual({ status: "in_flight" });
        await store.complete("evt_basic", token, TTL);
        expect(await store.claim("evt_basic", LEASE)).toEqual({ status: "completed" });
        // Keys are independent.
        expect((await store.claim("evt_other", LEASE)).status).toBe("claimed");
      }),
    );

    it(
      "gives each claim its own token",
      withStore(async ({ store, advance }) => {
        const first = tokenOf(await store.claim("evt_tokens", { leaseMs: 100 }));
        advance(101);
        const second = tokenOf(await store.claim("evt_tokens", LEASE));
        expect(second).not.toBe(first);
        expect(typeof first).toBe("string");
      }),
    );

    it(
      "lets exactly one of many concurrent claims of one key win",
      withStore(async (subject) => {
        const stores = subject.replicas
          ? await subject.replicas(12)
          : Array(12).fill(subject.store);
        for (let round = 0; round < 4; round++) {
          const key = `evt_race_${round}`;
          const results = await Promise.all(
            stores.map((store: IdempotencyStore) => store.claim(key, LEASE)),
          );
          const statuses = results.map((result) => result.status);
          expect(statuses.filter((status) => status === "claimed")).toHaveLength(1);
          expect(statuses.filter((status) => status === "in_flight")).toHaveLength(11);
        }
      }),
    );

    it(
      "lets the lease expire, so a crashed delivery's claim is taken over",
      withStore(async ({ store, advance }) => {
        const crashed = tokenOf(await store.claim("evt_lease", { leaseMs: 1000 }));
        advance(999);
        expect(await store.claim("evt_lease", LEASE)).toEqual({ status: "in_flight" });
        advance(2);
        const retry = tokenOf(await store.claim("evt_lease", LEASE));
        expect(retry).not.toBe(crashed);
        // The crashed owner's late release must not free the new owner's claim.
        await store.release("evt_lease", crashed);
        expect(await store.claim("evt_lease", LEASE)).toEqual({ status: "in_flight" });
      }),
    );

    it(
      "releases after a failure, so the next delivery claims again",
      withStore(async ({ store }) => {
        const token = tokenOf(await store.claim("evt_release", LEASE));
        await store.release("evt_release", token);
        expect((await store.claim("evt_release", LEASE)).status).toBe("claimed");
      }),
    );

    it(
      "ignores a release by anyone but the owner, and any release after complete",
      withStore(async ({ store }) => {
        const owner = tokenOf(await store.claim("evt_owner", LEASE));
        await store.release("evt_owner", "not-the-owner");
        expect(await store.claim("evt_owner", LEASE)).toEqual({ status: "in_flight" });
        await store.complete("evt_owner", owner, TTL);
        await store.release("evt_owner", owner);
        expect(await store.claim("evt_owner", LEASE)).toEqual({ status: "completed" });
        // Releasing a key nobody claimed is harmless.
        await store.release("evt_never_claimed", "token");
        expect((await store.claim("evt_never_claimed", LEASE)).status).toBe("claimed");
      }),
    );

    it(
      "completes even after the lease ran out (the effect happened)",
      withStore(async ({ store, advance }) => {
        const slow = tokenOf(await store.claim("evt_slow", { leaseMs: 50 }));
        advance(100);
        await store.complete("evt_slow", slow, TTL);
        expect(await store.claim("evt_slow", LEASE)).toEqual({ status: "completed" });
      }),
    );

    it(
      "keeps a completed key for its TTL, then forgets it",
      withStore(async ({ store, advance }) => {
        const token = tokenOf(await store.claim("evt_ttl", LEASE));
        await store.complete("evt_ttl", token, { ttlMs: 5000 });
        advance(4999);
        expect(await store.claim("evt_ttl", LEASE)).toEqual({ status: "completed" });
        advance(2);
        expect((await store.claim("evt_ttl", LEASE)).status).toBe("claimed");
      }),
    );

    it(
      "renews a live claim past its first expiry, so no second delivery runs meanwhile",
      withStore(async ({ store, advance }) => {
        if (store.renew === undefined) throw new Error(`${name} has no renew`);
        const token = tokenOf(await store.claim("evt_renew", { leaseMs: 1000 }));
        for (let step = 0; step < 5; step++) {
          advance(600);
          expect(await store.renew("evt_renew", token, { leaseMs: 1000 })).toBe(true);
          expect(await store.claim("evt_renew", LEASE)).toEqual({ status: "in_flight" });
        }
        // 3 s after the claim, far past the first 1 s lease: still held, then completed.
        await store.complete("evt_renew", token, TTL);
        expect(await store.claim("evt_renew", LEASE)).toEqual({ status: "completed" });
      }),
    );

    it(
      "refuses a renewal by a token that does not own the key",
      withStore(async ({ store, advance }) => {
        if (store.renew === undefined) throw new Error(`${name} has no renew`);
        // Unknown key.
        expect(await store.renew("evt_nobody", "token", LEASE)).toBe(false);
        // Wrong token.
        const owner = tokenOf(await store.claim("evt_wrong", LEASE));
        expect(await store.renew("evt_wrong", "not-the-owner", LEASE)).toBe(false);
        // After complete.
        await store.complete("evt_wrong", owner, TTL);
        expect(await store.renew("evt_wrong", owner, LEASE)).toBe(false);
        // After the lease ran out and another delivery claimed the key.
        const stale = tokenOf(await store.claim("evt_taken", { leaseMs: 100 }));
        advance(101);
        const fresh = tokenOf(await store.claim("evt_taken", LEASE));
        expect(await store.renew("evt_taken", stale, LEASE)).toBe(false);
        expect(await store.renew("evt_taken", fresh, LEASE)).toBe(true);
        // After a release.
        await store.release("evt_taken", fresh);
        expect(await store.renew("evt_taken", fresh, LEASE)).toBe(false);
      }),
    );
  });
}
