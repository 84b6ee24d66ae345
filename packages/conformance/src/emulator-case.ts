import type { MappaEvent, MappaWebhooksOptions } from "@mappa-webhooks/core";
import { startMappaEmulator, type WebhookShape } from "@mappa-webhooks/emulator";
import { describe, expect, it } from "vitest";

/** The part of the suite's factory this case uses (the suite's own `ConformanceFactory`). */
type Factory = (
  options: MappaWebhooksOptions<unknown>,
) => Promise<{ webhookUrl: string; close(): Promise<void> }>;

const SECRET = "whsec_conformance_emulator_7c2e";
const API_KEY = "conformance_key";

/** Uploads a file and creates a report job on the emulator, through its HTTP API. */
async function createReportJob(
  baseUrl: string,
  webhookUrl: string,
  label: string,
): Promise<string> {
  const form = new FormData();
  form.append("file", new Blob([new Uint8Array(64)], { type: "audio/wav" }), "call");
  form.append("label", "call");
  const upload = await fetch(`${baseUrl}/v1/files`, {
    method: "POST",
    body: form,
    headers: { "Mappa-Api-Key": API_KEY },
  });
  const { mediaId } = (await upload.json()) as { mediaId: string };
  const created = await fetch(`${baseUrl}/v1/reports/jobs`, {
    method: "POST",
    headers: {
      "Mappa-Api-Key": API_KEY,
      "Content-Type": "application/json",
      "Idempotency-Key": `idem_${label}_${Date.now()}`,
    },
    body: JSON.stringify({
      media: { mediaId },
      output: { template: "general_report" },
      target: { strategy: "dominant", on_miss: "error" },
      label,
      webhook: { url: webhookUrl },
    }),
  });
  expect(created.status).toBe(202);
  return ((await created.json()) as { jobId: string }).jobId;
}

/**
 * The adapter receives the emulator's deliveries: jobs created on a local Mappa, run on its
 * manual clock, reach the adapter's handlers as typed events in every wire shape.
 */
export function describeEmulatorDeliveries(factory: Factory): void {
  describe("deliveries from the Mappa emulator", () => {
    it("a report job's completed and failed webhooks reach the handlers as typed events, in every shape", async () => {
      const completed: MappaEvent[] = [];
      const failed: MappaEvent[] = [];
      const app = await factory({
        secret: SECRET,
        on: {
          "report.completed": (event) => void completed.push(event),
          "report.failed": (event) => void failed.push(event),
        },
      });
      try {
        for (const shape of ["current", "guide", "mappa-node-1.2"] as WebhookShape[]) {
          const emulator = await startMappaEmulator({ clock: "manual", secret: SECRET, shape });
          try {
            const ok = await createReportJob(emulator.url, app.webhookUrl, `ok-${shape}`);
            const bad = await createReportJob(
              emulator.url,
              app.webhookUrl,
              "fail:target_not_found",
            );
            await emulator.advance(150_000);
            for (const jobId of [ok, bad]) {
              const [delivery] = emulator.deliveries({ jobId });
              expect(delivery?.attempts.map((a) => a.status)).toEqual([200]);
            }
            const done = completed.find((e) => (e.data as { jobId: string }).jobId === ok);
            expect(done?.type).toBe("report.completed");
            expect(done?.data).toMatchObject({ reportId: emulator.job(ok)?.reportId });
            const error = failed.find((e) => (e.data as { jobId: string }).jobId === bad);
            expect(error?.data).toMatchObject({ error: { code: "target_not_found" } });
          } finally {
            await emulator.close();
          }
        }
        expect(completed).toHaveLength(3);
        expect(failed).toHaveLength(3);
      } finally {
        await app.close();
      }
    });
  });
}
