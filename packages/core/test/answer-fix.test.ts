// A receiver mounted after a body parser answers body_already_parsed with the fix in the body,
// so the sender's side (the CLI, a curl, a log of answers) sees what to change.
import { describe, expect, it } from "vitest";
import { createMappaWebhooks, MappaWebhookError, signPayload } from "../src/index.js";

const secret = "whsec_fix_secret";
const body = JSON.stringify({
  id: "evt_fix",
  type: "report.completed",
  createdAt: "2027-01-15T08:00:00.000Z",
  timestamp: "2027-01-15T08:00:00.000Z",
  data: { jobId: "j", reportId: "r", status: "succeeded" },
});

describe("the body_already_parsed answer", () => {
  it("carries the fix from the message, and nothing secret", async () => {
    const webhooks = createMappaWebhooks({ secret });
    const request = new Request("http://127.0.0.1/webhooks/mappa", {
      method: "POST",
      headers: { "mappa-signature": await signPayload({ payload: body, secret }) },
      body,
    });
    await request.text(); // what a body-parsing middleware does
    const response = await webhooks.handleRequest(request);
    expect(response.status).toBe(500);
    const answer = (await response.json()) as Record<string, unknown>;
    expect(answer.error).toBe("body_already_parsed");
    expect(answer.fix).toMatch(/^Do not call request\.json\(\)/);
    expect(Object.keys(answer).sort()).toEqual(["error", "fix"]);
    expect(JSON.stringify(answer)).not.toContain(secret);
  });

  it("takes the fix as given, or the message's sentences after the first", () => {
    const given = new MappaWebhookError("body_already_parsed", "Gone. Do this.", {
      fix: "Do that.",
    });
    expect(given.fix).toBe("Do that.");
    const derived = new MappaWebhookError(
      "body_already_parsed",
      "The body was read by a parser (e.g. `express.json()`), so the bytes are gone. Mount `app.use(mappaWebhook(...))` first, or keep the raw bytes.",
    );
    expect(derived.fix).toBe("Mount `app.use(mappaWebhook(...))` first, or keep the raw bytes.");
    expect(new MappaWebhookError("body_already_parsed", "No fix here.").fix).toBeUndefined();
    expect(new MappaWebhookError("handler_failed", "Failed. Retry it.").fix).toBeUndefined();
  });

  it("stays out of every other 5xx", async () => {
    const webhooks = createMappaWebhooks({
      secret,
      on: {
        "report.completed": () => {
          throw new MappaWebhookError("body_already_parsed", "Inside. Private detail.");
        },
      },
    });
    const request = new Request("http://127.0.0.1/webhooks/mappa", {
      method: "POST",
      headers: { "mappa-signature": await signPayload({ payload: body, secret }) },
      body,
    });
    const response = await webhooks.handleRequest(request);
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: "handler_failed" });
  });
});
