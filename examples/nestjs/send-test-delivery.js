// Sends one signed test delivery to a running receiver, exactly as Mappa would.
// Usage: MAPPA_WEBHOOK_SECRET=whsec_... node send-test-delivery.js [url] [event type]
import { createHmac, randomUUID } from "node:crypto";

const url = process.argv[2] ?? "http://127.0.0.1:3000/webhooks/mappa";
const type = process.argv[3] ?? "report.completed";
const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to the secret the receiver uses.");
  process.exit(1);
}

const jobId = `job_${randomUUID().slice(0, 8)}`;
const data = {
  "report.completed": { jobId, reportId: `rep_${jobId.slice(4)}`, status: "completed" },
  "report.failed": { jobId, status: "failed", error: { code: "target_not_found", message: "x" } },
  "matching.completed": { jobId, matchingId: `mat_${jobId.slice(4)}`, status: "completed" },
  "matching.failed": { jobId, status: "failed", error: { code: "timeout", message: "x" } },
}[type] ?? { jobId };
const body = JSON.stringify({
  id: `evt_${randomUUID().replaceAll("-", "")}`,
  type,
  createdAt: new Date().toISOString(),
  data,
});

// mappa-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
const t = Math.floor(Date.now() / 1000);
const v1 = createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");

const response = await fetch(url, {
  method: "POST",
  headers: { "content-type": "application/json", "mappa-signature": `t=${t},v1=${v1}` },
  body,
});
console.log(`${response.status} ${await response.text()}`);
process.exitCode = response.ok ? 0 : 1;
