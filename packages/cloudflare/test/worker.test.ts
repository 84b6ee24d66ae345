// The stores in a real Worker on workerd (Miniflare, offline): the Hono adapter with the Durable
// Object store and with the D1 store, bundled by wrangler, answered over real HTTP.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningWorker, reportCompleted, signedHeaders, startWorker } from "./helpers.js";

let worker: RunningWorker;

beforeAll(async () => {
  worker = await startWorker();
});

afterAll(async () => {
  await worker?.stop();
});

async function deliver(body: string, headers?: Record<string, string>, path = "/webhooks/mappa") {
  const res = await fetch(`${worker.url}${path}`, {
    method: "POST",
    body,
    headers: headers ?? (await signedHeaders(body)),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function runs(reportId: string): Promise<number> {
  const res = await fetch(`${worker.url}/runs/${reportId}`);
  return ((await res.json()) as { runs: number }).runs;
}

async function tracked(query: string): Promise<string[]> {
  const res = await fetch(`${worker.url}/tracked?${query}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { jobId: string }[]).map((job) => job.jobId);
}

describe("the test Worker on workerd", () => {
  it("bundles with no node: module", () => {
    expect(worker.bundle).not.toMatch(/from\s*["']node:|require\(["']node:/);
    expect(worker.bundle).toContain("MappaIdempotencyObject");
  });
});

for (const { store, path, suffix } of [
  { store: "Durable Object", path: "/webhooks/mappa", suffix: "" },
  { store: "D1", path: "/d1/webhooks/mappa", suffix: "_d1" },
])
  describe(`the ${store} store behind the Hono adapter on workerd`, () => {
    const send = (body: string, headers?: Record<string, string>) => deliver(body, headers, path);

    it("handles a delivery once", async () => {
      expect(await send(reportCompleted(`rep_once${suffix}`))).toEqual({
        status: 200,
        json: { received: true },
      });
      expect(await runs(`rep_once${suffix}`)).toBe(1);
    });

    it("answers a duplicate delivery duplicate, without running the handler again", async () => {
      const body = reportCompleted(`rep_duplicate${suffix}`);
      expect((await send(body)).status).toBe(200);
      expect(await send(body)).toEqual({
        status: 200,
        json: { received: true, duplicate: true },
      });
      // Another delivery id of the same job outcome: the same event.
      expect(await send(reportCompleted(`rep_duplicate${suffix}`))).toEqual({
        status: 200,
        json: { received: true, duplicate: true },
      });
      expect(await runs(`rep_duplicate${suffix}`)).toBe(1);
    });

    it("releases the claim when the handler fails, so the retry runs it", async () => {
      const body = reportCompleted(`rep_fail_once${suffix}`);
      const first = await send(body);
      expect(first.status).toBe(500);
      expect(first.json.error).toBe("handler_failed");
      expect(await send(body)).toEqual({ status: 200, json: { received: true } });
      expect(await send(body)).toEqual({ status: 200, json: { received: true, duplicate: true } });
      expect(await runs(`rep_fail_once${suffix}`)).toBe(2);
    });

    it("runs concurrent copies of one delivery once", async () => {
      const id = `rep_gated_concurrent${suffix}`;
      const body = reportCompleted(id);
      const headers = await signedHeaders(body);
      // The first copy's handler is held open; the other five arrive while it runs.
      const settled: { status: number; json: Record<string, unknown> }[] = [];
      const copies = Array.from({ length: 6 }, () =>
        send(body, headers).then((answer) => {
          settled.push(answer);
          return answer;
        }),
      );
      const deadline = Date.now() + 60_000;
      while (settled.length < 5 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(settled.map((a) => a.status)).toEqual([409, 409, 409, 409, 409]);
      for (const answer of settled) expect(answer.json.error).toBe("event_in_flight");
      expect(await runs(id)).toBe(1);
      const gate = await fetch(`${worker.url}/open/${id}`, { method: "POST" });
      await gate.arrayBuffer();
      const answers = await Promise.all(copies);
      expect(answers.filter((a) => a.status === 200)).toEqual([
        { status: 200, json: { received: true } },
      ]);
      expect(await runs(id)).toBe(1);
      // Once done, a late copy is a duplicate.
      expect((await send(body, headers)).json).toEqual({ received: true, duplicate: true });
    });
  });

describe("job tracking behind the Hono adapter on workerd", () => {
  it("tracks jobs, pages them in job id order, and untracks a handled webhook's job", async () => {
    for (const id of ["job_t3", "job_t1", "job_rep_tracked", "job_t2", "job_t4"]) {
      const res = await fetch(`${worker.url}/track/${id}?at=1000`, { method: "POST" });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    expect(await tracked("limit=100")).toEqual([
      "job_rep_tracked",
      "job_t1",
      "job_t2",
      "job_t3",
      "job_t4",
    ]);
    expect(await tracked("limit=2")).toEqual(["job_rep_tracked", "job_t1"]);
    expect(await tracked("limit=2&after=job_t1")).toEqual(["job_t2", "job_t3"]);
    expect(await tracked("limit=2&after=job_t3")).toEqual(["job_t4"]);
    expect(await tracked("limit=2&after=job_t4")).toEqual([]);
    // The webhook of job_rep_tracked's outcome is handled: its job is no longer tracked.
    expect((await deliver(reportCompleted("rep_tracked"))).status).toBe(200);
    expect(await tracked("limit=100")).toEqual(["job_t1", "job_t2", "job_t3", "job_t4"]);
  });

  it("names the fix when the binding is missing", async () => {
    const res = await fetch(`${worker.url}/bad-binding`);
    const json = (await res.json()) as { code: string; message: string };
    expect(json.code).toBe("invalid_options");
    expect(json.message).toContain("[[durable_objects.bindings]]");
    expect(json.message).toContain("env.MAPPA_IDEMPOTENCY");
  });
});
