import { randomUUID } from "node:crypto";
import {
  type AttributeValue,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import type {
  ClaimResult,
  IdempotencyStore,
  JobTrackingStore,
  TrackedJob,
} from "@mappa-webhooks/core";
import {
  checkClient,
  checkPositive,
  checkTableName,
  errorMessage,
  invalidOptions,
  isConditionFailed,
  storeFailed,
} from "./errors.js";
import { PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE } from "./table.js";

/**
 * Options of {@link createDynamoDbIdempotencyStore}.
 *
 * @example
 * ```ts
 * const options: DynamoDbIdempotencyStoreOptions = { client: new DynamoDBClient({}), tableName: "mappa-webhooks" };
 * ```
 */
export interface DynamoDbIdempotencyStoreOptions {
  /** A DynamoDBClient from `@aws-sdk/client-dynamodb` (`new DynamoDBClient({})`). */
  client: DynamoDBClient;
  /** The table (see `ensureTable` and `tableDefinition`): string `pk` and `sk`, TTL on `ttl`. */
  tableName: string;
  /** Longest one request may take (the SDK's retries included) before 503. Default 5000 ms. */
  timeoutMs?: number;
  /**
   * The clock for leases and TTLs, in milliseconds. Default `Date.now`: DynamoDB has no clock
   * of its own in expressions, so every instance compares its own (keep them NTP-synced;
   * a skew of `s` ms can shorten a lease by `s`). Pass one only in tests.
   */
  now?: () => number;
}

/**
 * The DynamoDB store: an idempotency store and a job-tracking store, with its table.
 *
 * @example
 * ```ts
 * const store: DynamoDbIdempotencyStore = createDynamoDbIdempotencyStore({ client, tableName });
 * console.log(store.tableName);
 * ```
 */
export interface DynamoDbIdempotencyStore extends Required<IdempotencyStore>, JobTrackingStore {
  /** The table the store uses. */
  readonly tableName: string;
}

const DEFAULT_TIMEOUT_MS = 5000;
const CLAIM_TRIES = 3;
/** DynamoDB's longest partition key is 2048 bytes; keep room for the `event#` prefix. */
const MAX_KEY_BYTES = 2000;
/** DynamoDB's longest sort key is 1024 bytes. */
const MAX_JOB_ID_BYTES = 1024;
const EVENT_SK = "-";
const TRACKED_PK = "tracked";
const IN_PROGRESS = "in_progress";
const COMPLETED = "completed";

const NAMES = {
  "#pk": PARTITION_KEY,
  "#token": "token",
  "#status": "status",
  "#expiresAt": "expiresAt",
  "#ttl": TTL_ATTRIBUTE,
};
/** `client.send` for any of this file's commands (the SDK types it per command union). */
const sendOf = (client: DynamoDBClient) =>
  client.send.bind(client) as unknown as (
    command: object,
    options: { abortSignal: AbortSignal },
  ) => Promise<unknown>;
const s = (value: string): AttributeValue => ({ S: value });
const n = (value: number): AttributeValue => ({ N: String(value) });
/** DynamoDB's TTL is in whole seconds; never before the item really expires. */
const ttlOf = (expiresAt: number) => n(Math.ceil(expiresAt / 1000));

/**
 * An {@link IdempotencyStore} and {@link JobTrackingStore} on Amazon DynamoDB, shared by every
 * instance (Lambda functions included), with the same contract as the core's memory store and
 * the Redis, Postgres and MySQL stores. A claim is one conditional write (free, or its
 * `expiresAt` passed: the way AWS Lambda Powertools' idempotency claims), with an owner token;
 * `renew` and `release` are conditional on that token; `complete` writes the done mark for its
 * TTL. DynamoDB's Time to Live deletes expired items lazily, so every condition compares
 * `expiresAt` itself. Tracked jobs are the items of partition `tracked`, sorted by job id.
 *
 * @example
 * ```ts
 * import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
 * import { createDynamoDbIdempotencyStore } from "@mappa-webhooks/dynamodb";
 *
 * const idempotency = createDynamoDbIdempotencyStore({
 *   client: new DynamoDBClient({}),
 *   tableName: "mappa-webhooks",
 * });
 * createMappaWebhooks({ secret, idempotency, on: handlers });
 * ```
 */
export function createDynamoDbIdempotencyStore(
  options: DynamoDbIdempotencyStoreOptions,
): DynamoDbIdempotencyStore {
  const api = "createDynamoDbIdempotencyStore";
  if (options === null || typeof options !== "object") {
    throw invalidOptions(
      api,
      'needs `{ client, tableName }`, e.g. `{ client: new DynamoDBClient({}), tableName: "mappa-webhooks" }`.',
    );
  }
  checkClient(api, options.client);
  const tableName = checkTableName(api, options.tableName);
  checkPositive(api, "timeoutMs", options.timeoutMs);
  if (options.now !== undefined && typeof options.now !== "function") {
    throw invalidOptions(api, "`now` must be a function returning milliseconds (like `Date.now`).");
  }
  const { client } = options;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const clock = options.now ?? Date.now;
  const now = () => Math.round(clock());

  const send = async <T>(
    what: string,
    command: object,
    allowConditionFailure = false,
  ): Promise<T | "condition_failed"> => {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return (await Promise.race([
        sendOf(client)(command, { abortSignal: abort.signal }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            abort.abort();
            reject(storeFailed(`DynamoDB did not answer the ${what} within ${timeoutMs} ms.`));
          }, timeoutMs);
        }),
      ])) as T;
    } catch (error) {
      if (allowConditionFailure && isConditionFailed(error)) return "condition_failed";
      if ((error as { code?: unknown }).code === "idempotency_store_failed") throw error;
      throw storeFailed(
        `the ${what} on table ${tableName} failed: ${errorMessage(error)}.`,
        error,
        tableName,
      );
    } finally {
      clearTimeout(timer);
    }
  };

  const eventKey = (name: string, key: unknown) => {
    if (typeof key !== "string" || key === "") {
      throw storeFailed(`the ${name} needs a non-empty string key.`);
    }
    if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
      throw storeFailed(
        `the ${name} of a key longer than ${MAX_KEY_BYTES} bytes is not stored (DynamoDB's key limit).`,
      );
    }
    return { [PARTITION_KEY]: s(`event#${key}`), [SORT_KEY]: s(EVENT_SK) };
  };
  const jobKey = (name: string, jobId: unknown) => {
    if (typeof jobId !== "string" || jobId === "") {
      throw storeFailed(`${name} needs a non-empty string job id.`);
    }
    if (Buffer.byteLength(jobId) > MAX_JOB_ID_BYTES) {
      throw storeFailed(`${name}: a job id longer than ${MAX_JOB_ID_BYTES} bytes is not stored.`);
    }
    return { [PARTITION_KEY]: s(TRACKED_PK), [SORT_KEY]: s(jobId) };
  };

  const store: DynamoDbIdempotencyStore = {
    tableName,
    async claim(key, { leaseMs }): Promise<ClaimResult> {
      const Key = eventKey("claim", key);
      const lease = Math.ceil(leaseMs);
      for (let attempt = 0; attempt < CLAIM_TRIES; attempt++) {
        const token = randomUUID();
        const at = now();
        // Free, or expired (a crashed claim, or a completed mark past its TTL that DynamoDB's
        // TTL has not deleted yet): take it. A live one fails the condition.
        const result = await send<{ Item?: Record<string, AttributeValue> }>(
          `claim of event ${key}`,
          new UpdateItemCommand({
            TableName: tableName,
            Key,
            UpdateExpression:
              "SET #token = :token, #status = :inProgress, #expiresAt = :expiresAt, #ttl = :ttl",
            ConditionExpression: "attribute_not_exists(#pk) OR #expiresAt <= :now",
            ExpressionAttributeNames: NAMES,
            ExpressionAttributeValues: {
              ":token": s(token),
              ":inProgress": s(IN_PROGRESS),
              ":expiresAt": n(at + lease),
              ":ttl": ttlOf(at + lease),
              ":now": n(at),
            },
          }),
          true,
        );
        if (result !== "condition_failed") return { status: "claimed", token };
        // Held by someone else: completed or in flight? (A strongly consistent read: the
        // condition failed on the item as it was; it may have been released since.)
        const read = await send<{ Item?: Record<string, AttributeValue> }>(
          `claim of event ${key}`,
          new GetItemCommand({ TableName: tableName, Key, ConsistentRead: true }),
        );
        if (read === "condition_failed") continue;
        const item = read.Item;
        const expiresAt = Number(item?.expiresAt?.N);
        if (item === undefined || !(expiresAt > now())) continue; // Released or expired: again.
        return { status: item.status?.S === COMPLETED ? "completed" : "in_flight" };
      }
      return { status: "in_flight" };
    },
    async complete(key, token, { ttlMs }) {
      const Key = eventKey("complete", key);
      const expiresAt = now() + Math.ceil(ttlMs);
      // Unconditional, as in the other stores: the effect happened even if the lease ran out.
      await send(
        `completion of event ${key}`,
        new PutItemCommand({
          TableName: tableName,
          Item: {
            ...Key,
            token: s(token),
            status: s(COMPLETED),
            expiresAt: n(expiresAt),
            [TTL_ATTRIBUTE]: ttlOf(expiresAt),
          },
        }),
      );
    },
    async release(key, token) {
      const Key = eventKey("release", key);
      await send(
        `release of event ${key}`,
        new DeleteItemCommand({
          TableName: tableName,
          Key,
          ConditionExpression: "#token = :token AND #status = :inProgress",
          ExpressionAttributeNames: { "#token": "token", "#status": "status" },
          ExpressionAttributeValues: { ":token": s(token), ":inProgress": s(IN_PROGRESS) },
        }),
        true,
      );
    },
    async renew(key, token, { leaseMs }) {
      const Key = eventKey("renewal", key);
      const expiresAt = now() + Math.ceil(leaseMs);
      const result = await send(
        `renewal of event ${key}`,
        new UpdateItemCommand({
          TableName: tableName,
          Key,
          UpdateExpression: "SET #expiresAt = :expiresAt, #ttl = :ttl",
          ConditionExpression: "#token = :token AND #status = :inProgress",
          ExpressionAttributeNames: {
            "#token": "token",
            "#status": "status",
            "#expiresAt": "expiresAt",
            "#ttl": TTL_ATTRIBUTE,
          },
          ExpressionAttributeValues: {
            ":token": s(token),
            ":inProgress": s(IN_PROGRESS),
            ":expiresAt": n(expiresAt),
            ":ttl": ttlOf(expiresAt),
          },
        }),
        true,
      );
      return result !== "condition_failed";
    },
    async track(jobId, trackOptions = {}) {
      const Key = jobKey("track", jobId);
      const trackedAt = trackOptions.trackedAt ?? now();
      // Tracking again keeps the first `trackedAt`.
      await send(
        `tracking of job ${jobId}`,
        new PutItemCommand({
          TableName: tableName,
          Item: { ...Key, trackedAt: n(trackedAt) },
          ConditionExpression: "attribute_not_exists(#pk)",
          ExpressionAttributeNames: { "#pk": PARTITION_KEY },
        }),
        true,
      );
    },
    async untrack(jobId) {
      const Key = jobKey("untrack", jobId);
      await send(
        `untracking of job ${jobId}`,
        new DeleteItemCommand({ TableName: tableName, Key }),
      );
    },
    async tracked({ limit, after }) {
      if (!(Number.isSafeInteger(limit) && limit >= 0)) {
        throw storeFailed(`tracked needs a whole number \`limit\`, got ${String(limit)}.`);
      }
      if (after !== undefined && typeof after !== "string") {
        throw storeFailed("tracked needs a string `after` (a job id), or none.");
      }
      const jobs: TrackedJob[] = [];
      const from = after === undefined || after === "" ? undefined : after;
      let start: Record<string, AttributeValue> | undefined;
      while (jobs.length < limit) {
        const page = await send<{
          Items?: Record<string, AttributeValue>[];
          LastEvaluatedKey?: Record<string, AttributeValue>;
        }>(
          "listing of tracked jobs",
          new QueryCommand({
            TableName: tableName,
            KeyConditionExpression:
              from === undefined ? "#pk = :tracked" : "#pk = :tracked AND #sk > :after",
            ExpressionAttributeNames: {
              "#pk": PARTITION_KEY,
              ...(from === undefined ? {} : { "#sk": SORT_KEY }),
            },
            ExpressionAttributeValues: {
              ":tracked": s(TRACKED_PK),
              ...(from === undefined ? {} : { ":after": s(from) }),
            },
            ConsistentRead: true,
            Limit: limit - jobs.length,
            ...(start === undefined ? {} : { ExclusiveStartKey: start }),
          }),
        );
        if (page === "condition_failed") break;
        for (const item of page.Items ?? []) {
          const jobId = item[SORT_KEY]?.S;
          if (jobId !== undefined) jobs.push({ jobId, trackedAt: Number(item.trackedAt?.N) });
        }
        start = page.LastEvaluatedKey;
        if (start === undefined) break;
      }
      return jobs.slice(0, limit);
    },
  };
  return store;
}
