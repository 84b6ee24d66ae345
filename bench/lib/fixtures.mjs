// Inputs shared by every benchmark: a realistic Mappa event padded to an exact size, a secret,
// and the signature header, built with the core's real signer.
import { signPayload } from "@mappa-webhooks/core";

export const SECRET = "whsec_bench_4d1f0c2a9e7b4c3f8a6d5e2b1c0f9a8e";
export const WEBHOOK_PATH = "/webhooks/mappa";

/** Body sizes of the micro benchmarks, in bytes. */
export const MICRO_SIZES = [256, 1024, 16 * 1024, 256 * 1024];

/** A human label for a byte count: 256 B, 1 KiB, 16 KiB ... */
export function sizeLabel(bytes) {
  if (bytes >= 1024 * 1024) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

/**
 * A compact `report.completed` event, in Mappa's current wire shape, whose UTF-8 encoding is exactly `bytes` long. Large bodies
 * grow by an array of small objects (what a real report summary looks like to JSON.parse), not
 * by one long string, which would make parsing unrealistically cheap.
 */
export function createEventBody(bytes, id = "evt_01JBENCH0000000000000000") {
  const event = {
    id,
    type: "report.completed",
    createdAt: "2026-11-26T18:00:00.000Z",
    timestamp: "2026-11-26T18:00:00.000Z",
    data: {
      jobId: "job_01JBENCH",
      reportId: "rep_01JBENCH",
      status: "succeeded",
      sections: [],
      note: "",
    },
  };
  const base = Buffer.byteLength(JSON.stringify(event));
  if (base > bytes) throw new Error(`an event needs at least ${base} bytes, asked for ${bytes}`);
  // Everything is ASCII, so string length is byte length; grow without re-serialising.
  let length = base;
  for (let index = 0; ; index++) {
    const section = {
      index,
      title: `Section ${index}`,
      score: (index * 37) % 100,
      tags: ["listening", "clarity"],
      ok: index % 3 !== 0,
    };
    const added = JSON.stringify(section).length + (index > 0 ? 1 : 0);
    if (length + added > bytes) break;
    event.data.sections.push(section);
    length += added;
  }
  const missing = bytes - Buffer.byteLength(JSON.stringify(event));
  event.data.note = "x".repeat(missing);
  const text = JSON.stringify(event);
  if (Buffer.byteLength(text) !== bytes) throw new Error("event padding is off");
  return text;
}

/** The signature header for `body`, signed now (or at `timestamp`) with {@link SECRET}. */
export function signBody(body, timestamp = Math.floor(Date.now() / 1000)) {
  return signPayload({ payload: body, secret: SECRET, timestamp });
}
