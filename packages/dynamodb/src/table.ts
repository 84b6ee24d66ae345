import {
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  UpdateTimeToLiveCommand,
} from "@aws-sdk/client-dynamodb";
import {
  checkClient,
  checkTableName,
  dynamoDbError,
  errorMessage,
  hintFor,
  invalidOptions,
} from "./errors.js";

/** The partition key attribute (a string): `event#<idempotency key>`, or `tracked`. */
export const PARTITION_KEY = "pk";
/** The sort key attribute (a string): `-` for an event's item, the job id for a tracked job. */
export const SORT_KEY = "sk";
/**
 * The table's TTL attribute (a number, Unix **seconds**): enable Time to Live on it so
 * DynamoDB deletes expired claims and completed marks. It deletes lazily (within days), so
 * the store never trusts its absence: every read also compares `expiresAt` (milliseconds).
 */
export const TTL_ATTRIBUTE = "ttl";

/**
 * The table {@link createDynamoDbIdempotencyStore} needs, as a `CreateTableCommand` input
 * (on-demand billing): a string partition key `pk` and a string sort key `sk`. For your
 * infrastructure code: the same key schema, and Time to Live on {@link TTL_ATTRIBUTE}.
 *
 * @example
 * ```ts
 * await client.send(new CreateTableCommand(tableDefinition("mappa-webhooks")));
 * ```
 */
export function tableDefinition(tableName: string): CreateTableCommandInput {
  checkTableName("tableDefinition", tableName);
  return {
    TableName: tableName,
    AttributeDefinitions: [
      { AttributeName: PARTITION_KEY, AttributeType: "S" },
      { AttributeName: SORT_KEY, AttributeType: "S" },
    ],
    KeySchema: [
      { AttributeName: PARTITION_KEY, KeyType: "HASH" },
      { AttributeName: SORT_KEY, KeyType: "RANGE" },
    ],
    BillingMode: "PAY_PER_REQUEST",
  };
}

/** Options of {@link ensureTable}. */
export interface EnsureTableOptions {
  /** A DynamoDBClient (`new DynamoDBClient({})`). */
  client: DynamoDBClient;
  /** The table to create if missing. */
  tableName: string;
  /** Longest wait for a new table to become ACTIVE. Default 120 000 ms. */
  timeoutMs?: number;
}

/** What {@link ensureTable} found or did. */
export interface EnsureTableResult {
  /** True when the table was created by this call. */
  created: boolean;
  /**
   * `"enabled"`: Time to Live is on (or being turned on) for {@link TTL_ATTRIBUTE};
   * `"unsupported"`: the endpoint has no Time to Live (DynamoDB Local, dynalite), so nothing
   * is ever deleted there (the store stays correct: it compares expiries itself).
   */
  timeToLive: "enabled" | "unsupported";
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Creates the store's table if it is missing (on-demand billing, see {@link tableDefinition}),
 * waits until it is ACTIVE and turns on Time to Live for {@link TTL_ATTRIBUTE}. For tests and
 * first runs; in production create the table with your infrastructure code. An existing table
 * with another key schema is refused with `invalid_options`.
 *
 * @example
 * ```ts
 * const client = new DynamoDBClient({});
 * await ensureTable({ client, tableName: "mappa-webhooks" });
 * ```
 */
export async function ensureTable(options: EnsureTableOptions): Promise<EnsureTableResult> {
  const api = "ensureTable";
  if (options === null || typeof options !== "object") {
    throw invalidOptions(api, "needs `{ client, tableName }`.");
  }
  checkClient(api, options.client);
  const tableName = checkTableName(api, options.tableName);
  const { client } = options;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const failed = (what: string, error: unknown) =>
    dynamoDbError(
      "idempotency_store_failed",
      `${api}: ${what} ${tableName} failed: ${errorMessage(error)}.${hintFor(error, tableName)}`,
      error,
    );

  const describe = async () => {
    try {
      return (await client.send(new DescribeTableCommand({ TableName: tableName }))).Table;
    } catch (error) {
      if ((error as { name?: unknown }).name === "ResourceNotFoundException") return undefined;
      throw failed("describing the table", error);
    }
  };

  let table = await describe();
  let created = false;
  if (table === undefined) {
    try {
      await client.send(new CreateTableCommand(tableDefinition(tableName)));
      created = true;
    } catch (error) {
      // Another instance created it meanwhile.
      if ((error as { name?: unknown }).name !== "ResourceInUseException") {
        throw failed("creating the table", error);
      }
    }
    table = await describe();
  }
  const deadline = Date.now() + timeoutMs;
  while (table?.TableStatus !== "ACTIVE") {
    if (Date.now() > deadline) {
      throw dynamoDbError(
        "idempotency_store_failed",
        `${api}: the table ${tableName} is still ${table?.TableStatus ?? "missing"} after ${timeoutMs} ms.`,
      );
    }
    await sleep(200);
    table = await describe();
  }
  const keys = Object.fromEntries(
    (table.KeySchema ?? []).map((key) => [key.KeyType, key.AttributeName]),
  );
  if (keys.HASH !== PARTITION_KEY || keys.RANGE !== SORT_KEY) {
    throw invalidOptions(
      api,
      `the table ${tableName} exists with another key schema (${JSON.stringify(keys)}); the store needs a string partition key "${PARTITION_KEY}" and a string sort key "${SORT_KEY}": use a table of its own.`,
    );
  }

  let status: string | undefined;
  try {
    const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
    status = ttl.TimeToLiveDescription?.TimeToLiveStatus;
  } catch (error) {
    if (isUnsupported(error)) return { created, timeToLive: "unsupported" };
    throw failed("describing Time to Live of", error);
  }
  if (status === "ENABLED" || status === "ENABLING") return { created, timeToLive: "enabled" };
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
      }),
    );
  } catch (error) {
    if (isUnsupported(error)) return { created, timeToLive: "unsupported" };
    throw failed("turning on Time to Live of", error);
  }
  return { created, timeToLive: "enabled" };
}

/** An emulator without the operation (dynalite answers UnknownOperationException). */
function isUnsupported(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === "UnknownOperationException" || name === "UnknownOperation";
}
