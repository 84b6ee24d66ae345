import { createMappaRecovery, createMemoryIdempotencyStore } from "@mappa-webhooks/core";
import type { LambdaFunctionURLEvent } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { createRecoveryHandler } from "../src/index.js";

const TOKEN = "cron_secret_0123456789abcdef";
const ENDED = "2026-01-17T12:00:00.000Z";

function recoveryFor(jobs: Record<string, "ok" | number>) {
  const handled: string[] = [];
  const recovery = createMappaRecovery({
    secret: "whsec_lambda_recovery",
    idempotency: createMemoryIdempotencyStore(),
    clock: () => Date.parse(ENDED) + 60 * 60 * 1000,
    logger: false,
    on: { "report.completed": (event) => void handled.push(event.data.reportId) },
    fetchJob: async (id) => {
      const job = jobs[id];
      if (typeof job === "number") throw Object.assign(new Error(`HTTP ${job}`), { status: job });
      return {
        id,
        type: "report.generate",
        status: "succeeded",
        createdAt: ENDED,
        updatedAt: ENDED,
        reportId: `rep_${id}`,
      };
    },
  });
  return { recovery, handled };
}

function functionUrlEvent(authorization?: string): LambdaFunctionURLEvent {
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: "/",
    rawQueryString: "",
    headers: authorization === undefined ? {} : { authorization },
    requestContext: {
      accountId: "anonymous",
      apiId: "url",
      domainName: "example.lambda-url.eu-west-1.on.aws",
      domainPrefix: "example",
      http: {
        method: "GET",
        path: "/",
        protocol: "HTTP/1.1",
        sourceIp: "127.0.0.1",
        userAgent: "cron",
      },
      requestId: "r1",
      routeKey: "$default",
      stage: "$default",
      time: "17/Jan/2026:12:00:00 +0000",
      timeEpoch: 0,
    },
    isBase64Encoded: false,
  };
}

describe("createRecoveryHandler", () => {
  it("runs recovery on an EventBridge schedule and returns the report", async () => {
    const { recovery, handled } = recoveryFor({ job_a: "ok" });
    await recovery.track("job_a");
    const handler = createRecoveryHandler(recovery, { token: TOKEN });
    const report = await handler({ source: "aws.events", "detail-type": "Scheduled Event" });
    expect(report).toMatchObject({ checked: 1, counts: { recovered: 1 } });
    expect(handled).toEqual(["rep_job_a"]);
  });

  it("fails a scheduled invocation when Mappa's API fails, so the run shows as failed", async () => {
    const { recovery } = recoveryFor({ job_b: 503 });
    await recovery.track("job_b");
    const handler = createRecoveryHandler(recovery, { token: TOKEN });
    await expect(handler({ source: "aws.scheduler" })).rejects.toMatchObject({
      code: "mappa_api_failed",
    });
  });

  it("needs the bearer token behind a function URL", async () => {
    const { recovery, handled } = recoveryFor({ job_c: "ok" });
    await recovery.track("job_c");
    const handler = createRecoveryHandler(recovery, { token: TOKEN });
    const refused = await handler(functionUrlEvent("Bearer wrong"));
    expect(refused).toMatchObject({ statusCode: 401, body: '{"error":"unauthorized"}' });
    expect(handled).toEqual([]);
    const ran = await handler(functionUrlEvent(`Bearer ${TOKEN}`));
    expect(ran.statusCode).toBe(200);
    expect(JSON.parse(ran.body as string)).toMatchObject({ counts: { recovered: 1 } });
    expect(handled).toEqual(["rep_job_c"]);
  });
});
