import { describe, expect, it } from "vitest";
import {
  createMappaRecovery,
  createMemoryIdempotencyStore,
  createRecoveryEndpoint,
  type MappaJob,
  type MappaWebhookError,
} from "../src/index.js";

const TOKEN = "cron_secret_0123456789abcdef";
const ENDED = "2026-01-17T12:00:00.000Z";
const LATER = Date.parse(ENDED) + 60 * 60 * 1000;

function setUp(jobs: Record<string, MappaJob | number>) {
  const handled: string[] = [];
  const errors: MappaWebhookError[] = [];
  const store = createMemoryIdempotencyStore();
  const recovery = createMappaRecovery({
    secret: "whsec_endpoint",
    idempotency: store,
    clock: () => LATER,
    logger: false,
    onError: (error) => void errors.push(error),
    on: { "report.completed": (event) => void handled.push(event.data.reportId) },
    fetchJob: async (jobId) => {
      const job = jobs[jobId];
      if (typeof job === "number") throw Object.assign(new Error(`HTTP ${job}`), { status: job });
      if (job === undefined) throw Object.assign(new Error("not found"), { status: 404 });
      return job;
    },
  });
  return { recovery, handled, errors };
}

const succeeded = (id: string): MappaJob => ({
  id,
  type: "report.generate",
  status: "succeeded",
  createdAt: ENDED,
  updatedAt: ENDED,
  reportId: `rep_${id}`,
});

describe("createRecoveryEndpoint", () => {
  it("runs reconcile for a GET with the bearer token and answers its report as JSON", async () => {
    const { recovery, handled } = setUp({ j1: succeeded("j1") });
    await recovery.track("j1");
    const endpoint = createRecoveryEndpoint(recovery, { token: TOKEN });
    const answer = await endpoint({
      method: "GET",
      headers: { Authorization: `Bearer ${TOKEN}` },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(answer.body)).toMatchObject({
      checked: 1,
      counts: { recovered: 1 },
      jobs: [{ jobId: "j1", outcome: "recovered", type: "report.completed" }],
    });
    expect(handled).toEqual(["rep_j1"]);
    // The job is handled and untracked: a second run has nothing to look at.
    const again = await endpoint({ method: "POST", headers: { authorization: `bearer ${TOKEN}` } });
    expect(JSON.parse(again.body)).toMatchObject({ checked: 0 });
    expect(handled).toEqual(["rep_j1"]);
  });

  it("answers 401 and runs nothing without the right token", async () => {
    const { recovery, handled } = setUp({ j1: succeeded("j1") });
    await recovery.track("j1");
    const endpoint = createRecoveryEndpoint(recovery, { token: TOKEN });
    for (const authorization of [undefined, "", `Bearer ${TOKEN}x`, TOKEN, "Basic abc"]) {
      const answer = await endpoint({
        method: "GET",
        headers: authorization === undefined ? {} : { authorization },
      });
      expect(answer.status).toBe(401);
      expect(answer.headers["www-authenticate"]).toBe("Bearer");
      expect(JSON.parse(answer.body)).toEqual({ error: "unauthorized" });
    }
    expect(handled).toEqual([]);
  });

  it("answers 405 with Allow for other methods", async () => {
    const { recovery } = setUp({});
    const endpoint = createRecoveryEndpoint(recovery, { token: TOKEN });
    const answer = await endpoint({ method: "DELETE", headers: {} });
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe("GET, POST");
  });

  it("answers 503 naming the API error when Mappa's API failed, so the cron run shows it", async () => {
    const { recovery, handled } = setUp({ j1: 401 });
    await recovery.track("j1");
    const endpoint = createRecoveryEndpoint(recovery, { token: TOKEN });
    const answer = await endpoint({ method: "GET", headers: { authorization: `Bearer ${TOKEN}` } });
    expect(answer.status).toBe(503);
    const body = JSON.parse(answer.body);
    expect(body.apiError.code).toBe("mappa_api_failed");
    expect(body.apiError.message).toMatch(/API key/);
    expect(body.jobs).toEqual([{ jobId: "j1", outcome: "api_error", error: "mappa_api_failed" }]);
    expect(handled).toEqual([]);
  });

  it("refuses to be created without a recovery or with a short token, naming the fix", () => {
    const { recovery } = setUp({});
    expect(() => createRecoveryEndpoint(recovery, { token: "short" })).toThrow(
      expect.objectContaining({
        code: "invalid_options",
        message: expect.stringMatching(/CRON_SECRET/),
      }),
    );
    expect(() => createRecoveryEndpoint(undefined as never, { token: TOKEN })).toThrow(
      expect.objectContaining({ code: "invalid_options" }),
    );
  });
});
