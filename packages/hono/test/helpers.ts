import { signPayload } from "@mappa-webhooks/core";

export const SECRET = "whsec_hono_test_secret";

let sequence = 0;

/** A report.completed event body with a fresh id, exactly as it will be sent. */
export function reportCompleted(id = `evt_hono_${++sequence}_${Date.now()}`): string {
  return JSON.stringify({
    id,
    type: "report.completed",
    createdAt: "2026-01-17T12:05:00.000Z",
    data: { jobId: `job_${id}`, reportId: `rep_${id}`, status: "completed" },
  });
}

/** Headers of a delivery of `body` signed with the real signer. */
export async function signedHeaders(
  body: string | Uint8Array,
  secret = SECRET,
): Promise<Record<string, string>> {
  return {
    "content-type": "application/json",
    "mappa-signature": await signPayload({ payload: body, secret }),
  };
}
