import { fileURLToPath } from "node:url";
import { type RunningExample, send, startExample } from "@mappa-webhooks/conformance";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const dir = fileURLToPath(new URL("..", import.meta.url));
const secret = "whsec_example_otel_prometheus_5e1b";

/** The value of the first sample of `metric` whose labels include every one of `labels`. */
function sample(text: string, metric: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${metric}{`)) continue;
    const matches = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (matches) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

describe("examples/opentelemetry-prometheus (a process, scraped over HTTP)", () => {
  let example: RunningExample | undefined;
  const running = () => example as RunningExample;
  beforeAll(async () => {
    example = await startExample(dir, { MAPPA_WEBHOOK_SECRET: secret });
  });
  afterAll(async () => {
    await example?.stop();
  });

  const post = async (event: object, signWith = secret) => {
    const body = JSON.stringify(event);
    const signature = await signPayload({ payload: body, secret: signWith });
    return send(`${running().baseUrl}/webhooks/mappa`, {
      headers: { "content-type": "application/json", "mappa-signature": signature },
      body,
    });
  };
  const scrape = async () => {
    const response = await send(`${running().baseUrl}/metrics`, { method: "GET" });
    expect(response.status).toBe(200);
    return response.body;
  };

  it("counts, times and lags a handled delivery, and prints its spans", async () => {
    const id = `evt_otel_example_${Date.now()}`;
    const response = await post(createTestEvent("report.completed", { id }));
    expect(response.status).toBe(200);
    await running().waitForLine(new RegExp(`^\\[mappa\\] report\\.completed ${id}`), 20_000);
    // ConsoleSpanExporter prints each span as an object: the delivery span and its steps.
    await running().waitForLine(/name: 'process report\.completed'/, 20_000);
    await running().waitForLine(/name: 'mappa\.webhook\.handler'/, 20_000);
    expect(running().output()).toContain(`'messaging.message.id': '${id}'`);
    const handled = { mappa_webhook_outcome: "handled", mappa_event_type: "report.completed" };
    const text = await scrape();
    expect(sample(text, "mappa_webhook_deliveries_total", handled)).toBe(1);
    expect(sample(text, "messaging_process_duration_count", handled)).toBe(1);
    expect(sample(text, "mappa_webhook_lag_count", { mappa_event_type: "report.completed" })).toBe(
      1,
    );
    expect(text).toContain("# TYPE messaging_process_duration histogram");
  });

  it("counts a forged delivery as rejected with its error.type, and logs it without extra code", async () => {
    const response = await post(createTestEvent("report.completed"), "whsec_not_the_secret");
    expect(response.status).toBe(401);
    await running().waitForLine(/^@mappa-webhooks: delivery rejected 401 signature_mismatch: /);
    const text = await scrape();
    expect(
      sample(text, "mappa_webhook_deliveries_total", {
        mappa_webhook_outcome: "rejected",
        error_type: "signature_mismatch",
      }),
    ).toBe(1);
    expect(running().output()).not.toContain(secret);
  });
});
