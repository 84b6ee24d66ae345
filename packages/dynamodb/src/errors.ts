import { MappaWebhookError } from "@mappa-webhooks/core";

const PREFIX = "@mappa-webhooks/dynamodb: ";

export function dynamoDbError(
  code: "invalid_options" | "idempotency_store_failed",
  message: string,
  cause?: unknown,
): MappaWebhookError {
  const error = new MappaWebhookError(
    code,
    `${PREFIX}${message}`,
    cause === undefined ? {} : { cause },
  );
  const at = error.message.indexOf(PREFIX);
  if (at > 0) error.message = error.message.slice(at);
  return error;
}

export function invalidOptions(api: string, message: string): MappaWebhookError {
  return dynamoDbError("invalid_options", `${api}: ${message}`);
}

/** `Name: message` of an SDK error (its `name` is the DynamoDB error type). */
export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const { name, message } = error;
  if (name && name !== "Error" && !message.startsWith(name)) return `${name}: ${message}`;
  return message;
}

/** The codes of an error and its causes (a refused connection is `ECONNREFUSED` deep down). */
function codesOf(error: unknown): string[] {
  const codes: string[] = [];
  let current = error as { code?: unknown; name?: unknown; cause?: unknown; errors?: unknown };
  for (let depth = 0; current != null && depth < 5; depth++) {
    if (typeof current.code === "string") codes.push(current.code);
    if (typeof current.name === "string") codes.push(current.name);
    if (Array.isArray(current.errors)) {
      for (const inner of current.errors) {
        const code = (inner as { code?: unknown } | null)?.code;
        if (typeof code === "string") codes.push(code);
      }
    }
    current = current.cause as typeof current;
  }
  return codes;
}

/** The fix for an SDK error, when one can be named. */
export function hintFor(error: unknown, tableName: string): string {
  const codes = codesOf(error);
  if (codes.includes("ResourceNotFoundException")) {
    return ` The table ${tableName} does not exist (or is in another region/account): create it with \`ensureTable({ client, tableName })\` or your infrastructure code (see the README's "Table").`;
  }
  if (codes.includes("ECONNREFUSED") || codes.includes("ENOTFOUND")) {
    return " Nothing answers at the client's endpoint: check its `region` and `endpoint` (is DynamoDB Local or dynalite running?).";
  }
  if (codes.includes("CredentialsProviderError")) {
    return " The client found no AWS credentials: give the function a role, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.";
  }
  if (
    codes.includes("AccessDeniedException") ||
    codes.includes("UnrecognizedClientException") ||
    codes.includes("InvalidSignatureException")
  ) {
    return ` The credentials may not use the table: allow dynamodb:GetItem, PutItem, UpdateItem, DeleteItem and Query on ${tableName}.`;
  }
  if (
    codes.includes("ProvisionedThroughputExceededException") ||
    codes.includes("ThrottlingException") ||
    codes.includes("RequestLimitExceeded")
  ) {
    return ` DynamoDB throttled the request: raise the table's capacity or use on-demand (PAY_PER_REQUEST).`;
  }
  return "";
}

export function storeFailed(message: string, cause?: unknown, tableName = ""): MappaWebhookError {
  return dynamoDbError(
    "idempotency_store_failed",
    `${message}${cause === undefined ? "" : hintFor(cause, tableName)} Answered 503 so Mappa retries the delivery.`,
    cause,
  );
}

/** True for DynamoDB's answer to a failed ConditionExpression. */
export function isConditionFailed(error: unknown): boolean {
  return (error as { name?: unknown } | null)?.name === "ConditionalCheckFailedException";
}

/** DynamoDB table names: 3 to 255 of `a-z A-Z 0-9 _ - .`. */
export function checkTableName(api: string, tableName: unknown): string {
  if (typeof tableName !== "string" || !/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
    const shown = typeof tableName === "string" ? JSON.stringify(tableName) : String(tableName);
    throw invalidOptions(
      api,
      `\`tableName\` must be a DynamoDB table name (3 to 255 of a-z, A-Z, 0-9, "_", "-", "."), got ${shown}, e.g. \`{ tableName: "mappa-webhooks" }\`.`,
    );
  }
  return tableName;
}

export function checkClient(api: string, client: unknown): void {
  if (client == null || typeof (client as { send?: unknown }).send !== "function") {
    throw invalidOptions(
      api,
      '`client` must be a DynamoDBClient from "@aws-sdk/client-dynamodb" (`new DynamoDBClient({})`), with send().',
    );
  }
}

export function checkPositive(api: string, name: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > 2_147_483_647) {
    throw invalidOptions(
      api,
      `\`${name}\` must be a positive number of milliseconds, got ${String(value)}.`,
    );
  }
}
