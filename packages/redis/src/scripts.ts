import { createHash } from "node:crypto";

/** A Lua script with its SHA1, so clients can run it by hash (EVALSHA) and send the source only once. */
export interface RedisScript {
  readonly name: string;
  readonly source: string;
  readonly sha1: string;
}

function script(name: string, source: string): RedisScript {
  return { name, source, sha1: createHash("sha1").update(source).digest("hex") };
}

// One key per event. Its value is `c:<token>` while a delivery holds the lease (with the lease
// as PX expiry) and `d:<token>` once handled (with the completed TTL). Every script touches
// only that key, so each runs atomically on the one node (or cluster slot) that owns it.

/**
 * KEYS[1] event key; ARGV[1] token, ARGV[2] lease ms. → "claimed" | "in_flight" | "completed"
 * Idempotent for one token: ioredis sends unanswered commands again after a reconnect, and a
 * claim that ran before the connection dropped must not then find itself "in_flight".
 */
export const CLAIM_SCRIPT = script(
  "claim",
  `local current = redis.call('GET', KEYS[1])
if current then
  if current == 'c:' .. ARGV[1] then return 'claimed' end
  if string.sub(current, 1, 2) == 'd:' then return 'completed' end
  return 'in_flight'
end
redis.call('SET', KEYS[1], 'c:' .. ARGV[1], 'PX', ARGV[2])
return 'claimed'`,
);

/**
 * KEYS[1] event key; ARGV[1] token, ARGV[2] ttl ms. → 1
 * Unconditional: the handlers' effect happened, so the event is handled even if this lease
 * ran out meanwhile and another delivery took it over.
 */
export const COMPLETE_SCRIPT = script(
  "complete",
  `redis.call('SET', KEYS[1], 'd:' .. ARGV[1], 'PX', ARGV[2])
return 1`,
);

/**
 * KEYS[1] event key; ARGV[1] token, ARGV[2] lease ms. → 1 if extended, 0 if the key is not (or
 * no longer) this delivery's claim: completed, expired, or claimed by another delivery since.
 */
export const RENEW_SCRIPT = script(
  "renew",
  `if redis.call('GET', KEYS[1]) == 'c:' .. ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`,
);

/** KEYS[1] event key; ARGV[1] token. → 1 if released, 0 if the claim is not (or no longer) ours. */
export const RELEASE_SCRIPT = script(
  "release",
  `if redis.call('GET', KEYS[1]) == 'c:' .. ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`,
);
