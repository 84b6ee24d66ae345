// Sends one signed event to both instances at the same moment, then once more to each,
// the way retries and duplicates reach a load-balanced receiver. Exactly one delivery runs
// the handlers; the others are answered 409 (in flight) or 200 duplicate.
// Usage: MAPPA_WEBHOOK_SECRET=whsec_... node send-duplicates.js [url-a] [url-b]
import { createHmac, randomUUID } from "node:crypto";

const urls = [
  process.argv[2] ?? "http://127.0.0.1:3000/webhooks/mappa",
  process.argv[3] ?? "http://127.0.0.1:3001/webhooks/mappa",
];
const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to the secret the receivers use.");
  process.exit(1);
}
const jobId = `job_${randomUUID().slice(0, 8)}`;
const body = JSON.stringify({
  id: `evt_${randomUUID().replaceAll("-", "")}`,
  type: "report.completed",
  createdAt: new Date().toISOString(),
  data: { jobId, reportId: `rep_${jobId.slice(4)}`, status: "completed" },
});

async function send(url) {
  // mappa-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "mappa-signature": `t=${t},v1=${v1}` },
    body,
  });
  return `${url} → ${response.status} ${await response.text()}`;
}

console.log("at the same moment:");
for (const line of await Promise.all(urls.map(send))) console.log(`  ${line}`);
console.log("again, later:");
for (const url of urls) console.log(`  ${await send(url)}`);
