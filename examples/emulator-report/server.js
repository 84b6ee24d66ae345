// An app that asks Mappa for a report, receives the webhook when it is ready, and fetches it.
// Point MAPPA_BASE_URL at `mappa-webhooks emulator` to run the whole story offline.

import { randomUUID } from "node:crypto";
import { mappaWebhook } from "@mappa-webhooks/express";
import express from "express";

const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to the webhook secret (the emulator prints it).");
  process.exit(1);
}
const baseUrl = (process.env.MAPPA_BASE_URL ?? "http://127.0.0.1:4010").replace(/\/+$/, "");
const apiKey = process.env.MAPPA_API_KEY ?? "emulator";
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";

/** One call to Mappa's REST API: the raw key in Mappa-Api-Key, JSON back, errors thrown. */
async function mappa(path, init = {}) {
  const response = await fetch(`${baseUrl}${path}`, {
    ...init,
    headers: {
      "Mappa-Api-Key": apiKey,
      "X-Request-Id": `req_${randomUUID().replaceAll("-", "")}`,
      ...init.headers,
    },
  });
  const body = await response.json();
  if (!response.ok) {
    const error = body?.error ?? body;
    throw new Error(
      `Mappa ${init.method ?? "GET"} ${path}: ${response.status} ${error?.code}: ${error?.message}`,
    );
  }
  return body;
}

const app = express();
app.use(
  mappaWebhook({
    secret,
    on: {
      "report.completed": async (event) => {
        const report = await mappa(`/v1/reports/${encodeURIComponent(event.data.reportId)}`);
        console.log(
          `report ready ${report.id} (job ${report.jobId}): ${report.json?.title ?? "untitled"}`,
        );
      },
      "report.failed": (event) => {
        console.log(`report failed (job ${event.data.jobId}): ${event.data.error.code}`);
      },
    },
    onError: (error, info) =>
      console.error(`[mappa:error] ${error.code} in ${info.phase}: ${error.message}`),
  }),
);

const server = app.listen(port, host, async () => {
  const { port: actualPort } = server.address();
  console.log(`listening on http://${host}:${actualPort}`);
  try {
    // 1. upload the recording (here: one second of silence as a WAV file)
    const form = new FormData();
    form.append("file", new Blob([silentWav(1)], { type: "audio/wav" }), "call.wav");
    form.append("label", "call");
    const file = await mappa("/v1/files", { method: "POST", body: form });
    // 2. ask for a report; Mappa calls the webhook when it is done
    const label = process.env.REPORT_LABEL ?? "Discovery call";
    const receipt = await mappa("/v1/reports/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": `idem_${randomUUID()}` },
      body: JSON.stringify({
        media: { mediaId: file.mediaId },
        output: { template: "general_report" },
        target: { strategy: "dominant", on_miss: "error" },
        label,
        webhook: { url: `http://${host}:${actualPort}/webhooks/mappa` },
      }),
    });
    console.log(`job created ${receipt.jobId} (about ${receipt.estimatedWaitSec} s)`);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  }
});

function silentWav(seconds) {
  const rate = 8000;
  const data = rate * seconds;
  const wav = Buffer.alloc(44 + data);
  wav.write("RIFF", 0);
  wav.writeUInt32LE(36 + data, 4);
  wav.write("WAVEfmt ", 8);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20);
  wav.writeUInt16LE(1, 22);
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate, 28);
  wav.writeUInt16LE(1, 32);
  wav.writeUInt16LE(8, 34);
  wav.write("data", 36);
  wav.writeUInt32LE(data, 40);
  wav.fill(128, 44);
  return wav;
}
