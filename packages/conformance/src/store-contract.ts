// The contract every IdempotencyStore keeps, as one suite any store runs: claim, lease (expiry
// and renewal), complete, release, and that only a claim's owner can renew or release it.
//
// Time comes from the store's factory. A store that reads a clock the test controls (the memory
// store's `now`, the Postgres store's `now`) hands over `advance(ms)`, and the checks are exact
// to the millisecond. A store whose leases and TTLs run on a server's clock (Redis's PX expiry,
// Postgres's `clock_timestamp()`) lets real time pass: short leases, polling, and bounds that a
// slow machine can only make later, never wrong. Every expiry check compares with a time taken
// before the request that set the key, so a busy machine cannot make a correct store fail.
import type { ClaimResult, IdempotencyStore } from "@mappa-webhooks/core";
import { describe, expect, it } from "vitest";

/** One store, made fresh for one test by the factory. */
export interface IdempotencyStoreUnderTest {
  /** A store with no keys yet (its own key prefix, schema or table). */
  store: IdempotencyStore;
  /**
   * Moves the store's clock forward by `ms`. Required with `clock: "fake"` (the default): the
   * store reads a clock the test moves. Left out with `clock: "real"`.
   */
  advance?(ms: number): void;
  /**
   * `n` stores sharing this store's state, each over its own connection, so the claim race
   * runs on separate connections. Without it the race runs `n` concurrent claims on `store`.
   */
  replicas?(n: number): Promise<IdempotencyStore[]>;
  /** Frees what the factory made (connections, keys, tables); runs after each test. */
  close?(): Promise<void>;
}

/** Makes a fresh, empty store for one test of the contract. */
export type IdempotencyStoreFactory = () => Promise<IdempotencyStoreUnderTest>;

/** How the store keeps time, and what it implements. */
export interface IdempotencyStoreContractCapabilities {
  /**
   * `"fake"` (default): the store reads a clock the factory's `advance(ms)` moves; the checks
   * are exact (in flight 1 ms before the lease ends, free 1 ms after). `"real"`: leases and TTLs
   * run on the store's own clock (a server's), so the contract waits in real time.
   */
  clock?: "fake" | "real";
  /** The store implements `renew`. Default true. */
  renew?: boolean;
  /** With a real clock: the short lease and TTL the expiry checks wait out. Default 1000 ms. */
  realLeaseMs?: number;
  /**
   * With a real clock: how long past its end an expiry may take to show before the check
   * fails. Default 30 000 ms (generous: a shared CI machine can stall for seconds).
   */
  expiryTimeoutMs?: number;
  /** Concurrent claims of one key in the race check. Default 12. */
  concurrency?: number;
}

/** A lease no check outlives, for claims that must stay in flight. */
const LONG_LEASE = { leaseMs: 10 * 60_000 };
const LONG_TTL = { ttlMs: 10 * 60_000 };
/** The fake clock's lease and poll step (the step never lands on a lease's end). */
const FAKE_LEASE_MS = 1000;
const FAKE_STEP_MS = 101;
/** A real clock is polled this often while waiting for an expiry. */
const REAL_STEP_MS = 50;
/**
 * A server's clock and this process's monotonic clock may disagree by a few milliseconds
 * (rounding to whole milliseconds, a slewed wall clock); an early expiry is a bug only beyond this.
 */
const REAL_SLACK_MS = 25;
/** Attempts at the real-clock renewal check, each voided only by a stall longer than a lease. */
const RENEW_ATTEMPTS = 3;

interface ContractClock {
  /** Milliseconds on the clock the store expires keys by (or a clock running at its rate). */
  now(): number;
  /** Lets `ms` pass for the store. */
  pass(ms: number): Promise<void>;
}

function tokenOf(result: ClaimResult): string {
  if (result.status !== "claimed") throw new Error(`expected a claim, got ${result.status}`);
  expect(typeof result.token).toBe("string");
  expect(result.token).not.toBe("");
  return result.token;
}

/**
 * Registers the contract every {@link IdempotencyStore} keeps, run against the stores `factory`
 * makes (a fresh, empty one per test): one claim wins, concurrent claims of one key race to one
 * winner, a lease expires (and not before its end) so a crashed delivery's claim is taken over,
 * `renew` keeps a live claim and refuses anyone but its owner, `complete` holds a key for its
 * TTL (even after the lease ran out), and only the owner's `release` frees a claim.
 *
 * @example
 * ```ts
 * import { createMemoryIdempotencyStore } from "@mappa-webhooks/core";
 * import { describeIdempotencyStoreContract } from "@mappa-webhooks/conformance";
 *
 * // A store that reads a clock the test moves: exact checks.
 * describeIdempotencyStoreContract("memory", async () => {
 *   let now = 0;
 *   return {
 *     store: createMemoryIdempotencyStore({ now: () => now }),
 *     advance: (ms) => void (now += ms),
 *   };
 * });
 *
 * // A store whose TTLs run on the server: real time, short leases, generous bounds.
 * describeIdempotencyStoreContract(
 *   "redis",
 *   async () => {
 *     const prefix = uniquePrefix();
 *     return { store: createRedisIdempotencyStore({ client, prefix }), close: () => deleteKeys(prefix) };
 *   },
 *   { clock: "real" },
 * );
 * ```
 */
export function describeIdempotencyStoreContract(
  name: string,
  factory: IdempotencyStoreFactory,
  capabilities: IdempotencyStoreContractCapabilities = {},
): void {
  const fake = (capabilities.clock ?? "fake") === "fake";
  const hasRenew = capabilities.renew ?? true;
  const concurrency = capabilities.concurrency ?? 12;
  const expiryTimeoutMs = capabilities.expiryTimeoutMs ?? 30_000;
  const leaseMs = fake ? FAKE_LEASE_MS : (capabilities.realLeaseMs ?? 1000);
  const step = fake ? FAKE_STEP_MS : REAL_STEP_MS;
  const slack = fake ? 0 : REAL_SLACK_MS;
  const LEASE = { leaseMs };
  // Real time: room for the slowest check (three renewal attempts, or one expiry wait at its
  // bound) on a stalled machine. Fake time: the package's own test timeout.
  const timeout = fake ? undefined : 2 * expiryTimeoutMs + 10 * leaseMs + 30_000;

  interface Context {
    store: IdempotencyStore;
    subject: IdempotencyStoreUnderTest;
    clock: ContractClock;
    /**
     * Claims `key` (with a long lease) until a claim wins, expecting `alive` until then, and
     * checks that the key, set by a request sent at `from` to live `lifetimeMs`, was not free
     * before its end (nor, on a fake clock, more than one poll step after it). Returns the token.
     */
    claimOnceGone(
      key: string,
      alive: "in_flight" | "completed",
      from: number,
      lifetimeMs: number,
    ): Promise<string>;
  }

  const clockOf = (subject: IdempotencyStoreUnderTest): ContractClock => {
    if (!fake) {
      return {
        now: () => performance.now(),
        pass: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      };
    }
    const { advance } = subject;
    if (typeof advance !== "function") {
      throw new Error(
        `the ${name} factory returned no advance(ms): return one that moves the store's clock, or pass { clock: "real" } for a store on a server's clock.`,
      );
    }
    let elapsed = 0;
    return {
      now: () => elapsed,
      pass: async (ms) => {
        advance.call(subject, ms);
        elapsed += ms;
      },
    };
  };

  const check =
    (test: (context: Context) => Promise<void>): (() => Promise<void>) =>
    async () => {
      const subject = await factory();
      try {
        const { store } = subject;
        const clock = clockOf(subject);
        const claimOnceGone: Context["claimOnceGone"] = async (key, alive, from, lifetimeMs) => {
          for (;;) {
            const result = await store.claim(key, LONG_LEASE);
            const elapsed = clock.now() - from;
            if (result.status === "claimed") {
              expect(
                elapsed,
                `${key} was free ${elapsed.toFixed(1)} ms after it was set to live ${lifetimeMs} ms`,
              ).toBeGreaterThanOrEqual(lifetimeMs - slack);
              if (fake) {
                expect(elapsed, `${key} outlived its end by more than one step`).toBeLessThan(
                  lifetimeMs + step,
                );
              }
              return tokenOf(result);
            }
            expect(result).toEqual({ status: alive });
            if (elapsed > lifetimeMs + expiryTimeoutMs) {
              throw new Error(
                `${key} still answered ${alive} ${Math.round(elapsed)} ms after it was set to live ${lifetimeMs} ms.`,
              );
            }
            await clock.pass(step);
          }
        };
        await test({ store, subject, clock, claimOnceGone });
      } finally {
        await subject.close?.();
      }
    };

  const renewOf = (store: IdempotencyStore) => {
    const { renew } = store;
    if (typeof renew !== "function") {
      throw new Error(`${name} has no renew: pass { renew: false } if it has none by design.`);
    }
    return renew.bind(store);
  };

  describe(`IdempotencyStore contract: ${name}`, () => {
    it(
      "claims once, answers in_flight while claimed and completed after complete",
      check(async ({ store }) => {
        const token = tokenOf(await store.claim("evt_basic", LONG_LEASE));
        expect(await store.claim("evt_basic", LONG_LEASE)).toEqual({ status: "in_flight" });
        await store.complete("evt_basic", token, LONG_TTL);
        expect(await store.claim("evt_basic", LONG_LEASE)).toEqual({ status: "completed" });
        // Keys are independent.
        expect((await store.claim("evt_other", LONG_LEASE)).status).toBe("claimed");
      }),
      timeout,
    );

    it(
      "gives each claim its own token",
      check(async ({ store }) => {
        const first = tokenOf(await store.claim("evt_tokens", LONG_LEASE));
        await store.release("evt_tokens", first);
        const second = tokenOf(await store.claim("evt_tokens", LONG_LEASE));
        expect(second).not.toBe(first);
        const other = tokenOf(await store.claim("evt_tokens_other", LONG_LEASE));
        expect(new Set([first, second, other]).size).toBe(3);
      }),
      timeout,
    );

    it(
      `lets exactly one of ${concurrency} concurrent claims of one key win`,
      check(async ({ store, subject }) => {
        const stores: IdempotencyStore[] = subject.replicas
          ? await subject.replicas(concurrency)
          : Array.from({ length: concurrency }, () => store);
        for (let round = 0; round < 4; round++) {
          const key = `evt_race_${round}`;
          const results = await Promise.all(stores.map((each) => each.claim(key, LONG_LEASE)));
          const statuses = results.map((result) => result.status);
          expect(statuses.filter((status) => status === "claimed")).toHaveLength(1);
          expect(statuses.filter((status) => status === "in_flight")).toHaveLength(concurrency - 1);
        }
      }),
      timeout,
    );

    it(
      "lets the lease expire, not before its end, so a crashed delivery's claim is taken over",
      check(async ({ store, clock, claimOnceGone }) => {
        const from = clock.now();
        const crashed = tokenOf(await store.claim("evt_lease", LEASE));
        const retry = await claimOnceGone("evt_lease", "in_flight", from, leaseMs);
        expect(retry).not.toBe(crashed);
        // The crashed owner's late release must not free the new owner's claim.
        await store.release("evt_lease", crashed);
        expect(await store.claim("evt_lease", LONG_LEASE)).toEqual({ status: "in_flight" });
      }),
      timeout,
    );

    it(
      "releases after a failure, so the next delivery claims again",
      check(async ({ store }) => {
        const token = tokenOf(await store.claim("evt_release", LONG_LEASE));
        await store.release("evt_release", token);
        expect((await store.claim("evt_release", LONG_LEASE)).status).toBe("claimed");
      }),
      timeout,
    );

    it(
      "ignores a release by anyone but the owner, and any release after complete",
      check(async ({ store }) => {
        const owner = tokenOf(await store.claim("evt_owner", LONG_LEASE));
        await store.release("evt_owner", "not-the-owner");
        expect(await store.claim("evt_owner", LONG_LEASE)).toEqual({ status: "in_flight" });
        await store.complete("evt_owner", owner, LONG_TTL);
        await store.release("evt_owner", owner);
        expect(await store.claim("evt_owner", LONG_LEASE)).toEqual({ status: "completed" });
        // Releasing a key nobody claimed is harmless.
        await store.release("evt_never_claimed", "token");
        expect((await store.claim("evt_never_claimed", LONG_LEASE)).status).toBe("claimed");
      }),
      timeout,
    );

    it(
      "completes even after the lease ran out (the effect happened)",
      check(async ({ store, clock }) => {
        const slow = tokenOf(await store.claim("evt_slow", LEASE));
        // Measured from the claim's answer, so the lease has surely ended on the store's clock.
        await clock.pass(leaseMs + step);
        await store.complete("evt_slow", slow, LONG_TTL);
        expect(await store.claim("evt_slow", LONG_LEASE)).toEqual({ status: "completed" });
      }),
      timeout,
    );

    it(
      "keeps a completed key for its TTL, not less, then forgets it",
      check(async ({ store, clock, claimOnceGone }) => {
        const token = tokenOf(await store.claim("evt_ttl", LONG_LEASE));
        const from = clock.now();
        await store.complete("evt_ttl", token, { ttlMs: leaseMs });
        const next = await claimOnceGone("evt_ttl", "completed", from, leaseMs);
        expect(next).not.toBe(token);
      }),
      timeout,
    );

    if (hasRenew) describeRenew();
    else {
      it(
        "has no renew (the receiver then keeps no claim past its lease)",
        check(async ({ store }) => {
          expect(store.renew).toBeUndefined();
        }),
        timeout,
      );
    }
    if (fake) describeExactBoundaries();
  });

  function describeRenew(): void {
    it(
      "renews a live claim past its first expiry, so no second delivery runs meanwhile",
      check(async ({ store, clock }) => {
        const renew = renewOf(store);
        // Renews every 0.3 lease for three leases, checking in between that the key is held.
        // On a real clock a stall longer than a lease legitimately loses the claim: such an
        // attempt must show that much time passed, and the check runs again on a fresh key.
        const attempt = async (key: string): Promise<boolean> => {
          let renewedFrom = clock.now();
          const token = tokenOf(await store.claim(key, LEASE));
          const claimedBy = clock.now();
          const lost = (what: string) => {
            const since = clock.now() - renewedFrom;
            expect(
              since,
              `${key}: ${what} only ${since.toFixed(1)} ms after the last claim or renewal of ${leaseMs} ms`,
            ).toBeGreaterThanOrEqual(leaseMs - slack);
            return false;
          };
          while (clock.now() - claimedBy < 3 * leaseMs) {
            await clock.pass(Math.round(0.3 * leaseMs));
            const sentAt = clock.now();
            if (!(await renew(key, token, LEASE))) return lost("the renewal was refused");
            renewedFrom = sentAt;
            const probe = await store.claim(key, LONG_LEASE);
            if (probe.status === "claimed") return lost("another delivery claimed the key");
            expect(probe).toEqual({ status: "in_flight" });
          }
          // Three leases after the claim, far past the first: still held, then completed.
          await store.complete(key, token, LONG_TTL);
          expect(await store.claim(key, LONG_LEASE)).toEqual({ status: "completed" });
          return true;
        };
        const attempts = fake ? 1 : RENEW_ATTEMPTS;
        for (let n = 1; n <= attempts; n++) {
          if (await attempt(`evt_renew_${n}`)) return;
        }
        throw new Error(
          `every attempt stalled for longer than a ${leaseMs} ms lease: pass a longer realLeaseMs.`,
        );
      }),
      timeout,
    );

    it(
      "refuses a renewal by a token that does not own the key",
      check(async ({ store, clock, claimOnceGone }) => {
        const renew = renewOf(store);
        // Unknown key.
        expect(await renew("evt_nobody", "token", LONG_LEASE)).toBe(false);
        expect((await store.claim("evt_nobody", LONG_LEASE)).status).toBe("claimed");
        // Wrong token: refused, and the owner keeps the key.
        const owner = tokenOf(await store.claim("evt_wrong", LONG_LEASE));
        expect(await renew("evt_wrong", "not-the-owner", LONG_LEASE)).toBe(false);
        expect(await store.claim("evt_wrong", LONG_LEASE)).toEqual({ status: "in_flight" });
        // After complete: refused, and the key stays completed.
        await store.complete("evt_wrong", owner, LONG_TTL);
        expect(await renew("evt_wrong", owner, LONG_LEASE)).toBe(false);
        expect(await store.claim("evt_wrong", LONG_LEASE)).toEqual({ status: "completed" });
        // After the lease ran out and another delivery claimed the key.
        const from = clock.now();
        const stale = tokenOf(await store.claim("evt_taken", LEASE));
        const fresh = await claimOnceGone("evt_taken", "in_flight", from, leaseMs);
        expect(await renew("evt_taken", stale, LONG_LEASE)).toBe(false);
        expect(await renew("evt_taken", fresh, LONG_LEASE)).toBe(true);
        // After a release: refused, and the released key stays free.
        await store.release("evt_taken", fresh);
        expect(await renew("evt_taken", fresh, LONG_LEASE)).toBe(false);
        expect((await store.claim("evt_taken", LONG_LEASE)).status).toBe("claimed");
      }),
      timeout,
    );
  }

  // On a clock the test moves, the boundaries are exact.
  function describeExactBoundaries(): void {
    it(
      "ends a lease exactly leaseMs after the claim (fake clock)",
      check(async ({ store, clock }) => {
        tokenOf(await store.claim("evt_exact_lease", { leaseMs: 1000 }));
        await clock.pass(999);
        expect(await store.claim("evt_exact_lease", LONG_LEASE)).toEqual({ status: "in_flight" });
        await clock.pass(2);
        expect((await store.claim("evt_exact_lease", LONG_LEASE)).status).toBe("claimed");
      }),
    );

    it(
      "keeps a completed key exactly ttlMs after complete (fake clock)",
      check(async ({ store, clock }) => {
        const token = tokenOf(await store.claim("evt_exact_ttl", LONG_LEASE));
        await clock.pass(3000);
        await store.complete("evt_exact_ttl", token, { ttlMs: 5000 });
        await clock.pass(4999);
        expect(await store.claim("evt_exact_ttl", LONG_LEASE)).toEqual({ status: "completed" });
        await clock.pass(2);
        expect((await store.claim("evt_exact_ttl", LONG_LEASE)).status).toBe("claimed");
      }),
    );

    if (!hasRenew) return;
    it(
      "extends a renewed lease to leaseMs after the renewal, not after the claim (fake clock)",
      check(async ({ store, clock }) => {
        const renew = renewOf(store);
        const token = tokenOf(await store.claim("evt_exact_renew", { leaseMs: 1000 }));
        await clock.pass(900);
        expect(await renew("evt_exact_renew", token, { leaseMs: 1000 })).toBe(true);
        await clock.pass(999);
        expect(await store.claim("evt_exact_renew", LONG_LEASE)).toEqual({ status: "in_flight" });
        await clock.pass(2);
        expect((await store.claim("evt_exact_renew", LONG_LEASE)).status).toBe("claimed");
      }),
    );
  }
}
