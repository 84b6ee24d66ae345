// Sends one signed event to both instances at the same moment, then once more to each,
// the way retries and duplicates reach a load-balanced receiver. Exactly one delivery runs
// the handlers; the others are answered 409 (in flight) or 200 duplicate.
// Usage: MAPPA_WEBHOOK_SECRET=whsec_... node send-duplicates.js [url-a] [url-b]
// EVENT_SHAPE=mappa-node-1.2 sends the older shape without an `id` (deduplicated by job id).
import { createTestEvent, signPayload, TEST_EVENT_SHAPES } from "@mappa-webhooks/testing";

const urls = [
  process.argv[2] ?? "http://127.0.0.1:3000/webhooks/mappa",
  process.argv[3] ?? "http://127.0.0.1:3001/webhooks/mappa",
];
const secret = process.env.MAPPA_WEBHOOK_SECRET;
if (!secret) {
  console.error("Set MAPPA_WEBHOOK_SECRET to the secret the receivers use.");
  process.exit(1);
}
const shape = process.env.EVENT_SHAPE ?? "current";
if (!TEST_EVENT_SHAPES.includes(shape)) {
  console.error(`EVENT_SHAPE must be one of ${TEST_EVENT_SHAPES.join(", ")}.`);
  process.exit(1);
}
// The event as Mappa sends it (the newest wire shape by default), signed like Mappa signs it.
const body = JSON.stringify(createTestEvent("report.completed", {}, { shape }));

async function send(url) {
  const signature = await signPayload({ payload: body, secret });
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "mappa-signature": signature },
    body,
  });
  return `${url} → ${response.status} ${await response.text()}`;
}

console.log("at the same moment:");
for (const line of await Promise.all(urls.map(send))) console.log(`  ${line}`);
console.log("again, later:");
for (const url of urls) console.log(`  ${await send(url)}`);
