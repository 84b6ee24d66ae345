import { createMappaRecovery, createMemoryIdempotencyStore } from "@mappa-webhooks/core";
import { describe, expect, it } from "vitest";
import { createRecoveryRoute } from "../src/index.js";

const TOKEN = "cron_secret_0123456789abcdef";
const ENDED = "2026-01-17T12:00:00.000Z";

describe("createRecoveryRoute", () => {
  it("runs recovery for Vercel Cron's GET with the bearer token, and 401s anything else", async () => {
    const handled: string[] = [];
    const recovery = createMappaRecovery({
      secret: "whsec_next_recovery",
      idempotency: createMemoryIdempotencyStore(),
      clock: () => Date.parse(ENDED) + 60 * 60 * 1000,
      logger: false,
      on: { "report.completed": (event) => void handled.push(event.data.reportId) },
      fetchJob: async (id) => ({
        id,
        type: "report.generate",
        status: "succeeded",
        createdAt: ENDED,
        updatedAt: ENDED,
        reportId: `rep_${id}`,
      }),
    });
    await recovery.track("job_next");
    const GET = createRecoveryRoute(recovery, { token: TOKEN });
    const url = "http://localhost/api/mappa-recovery";

    const refused = await GET(new Request(url, { headers: { authorization: "Bearer nope" } }));
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({ error: "unauthorized" });
    expect(handled).toEqual([]);

    const ran = await GET(new Request(url, { headers: { authorization: `Bearer ${TOKEN}` } }));
    expect(ran.status).toBe(200);
    expect(ran.headers.get("cache-control")).toBe("no-store");
    expect(await ran.json()).toMatchObject({
      checked: 1,
      counts: { recovered: 1 },
      jobs: [{ jobId: "job_next", outcome: "recovered" }],
    });
    expect(handled).toEqual(["rep_job_next"]);
  });
});
