import {
  DEFAULT_SIGNATURE_HEADERS,
  DEFAULT_TOLERANCE_SEC,
  isMappaWebhookError,
  type MappaEvent,
  type MappaWebhookError,
  parseEvent,
  verifySignature,
} from "@mappa-webhooks/core";
import { plainMessage } from "../explain.js";

/** One step of the explanation: passed, failed, or not reached because an earlier one failed. */
export interface Check {
  id: "header_present" | "header_well_formed" | "timestamp" | "signature" | "event";
  label: string;
  ok: boolean | null;
  detail: string;
}

/** A delivery's signature check, step by step, in the order a receiver runs the checks. */
export interface Explanation {
  valid: boolean;
  now: number;
  toleranceSec: number;
  /** The header the signature was read from, when there is one. */
  headerName?: string;
  timestamp?: number;
  skewSec?: number;
  secretIndex?: number;
  checks: Check[];
  notes: string[];
  event?: { id: string | undefined; type: string; known: boolean };
  error?: { code: string; message: string; hint?: string };
}

const SIGNATURE_CHECKS = [
  ["header_present", "signature header present", "missing_signature"],
  ["header_well_formed", "header well-formed", "malformed_signature"],
  ["timestamp", "timestamp within tolerance", "timestamp_outside_tolerance"],
  ["signature", "signature matches the body", "signature_mismatch"],
] as const;

/** What the header says, for display once the core accepted its shape. */
function describeHeader(value: string): { t: number; count: number } {
  let t = 0;
  let count = 0;
  for (const part of value.split(",")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === "t") t = Number(rest.join("="));
    if (key === "v1") count++;
  }
  return { t, count };
}

function skewText(skew: number): string {
  if (skew === 0) return "exactly now";
  return skew > 0 ? `${skew} s in the past` : `${-skew} s in the future`;
}

/** The first signature header present (Mappa's name first), from raw header pairs. */
export function findSignatureHeader(
  headers: ReadonlyArray<readonly [string, string]>,
): { name: string; value: string } | undefined {
  for (const name of DEFAULT_SIGNATURE_HEADERS) {
    const found = headers.find(([key]) => key.toLowerCase() === name);
    if (found !== undefined) return { name, value: found[1] };
  }
  return undefined;
}

/**
 * Explains a delivery check by check, exactly as `mappa-webhooks verify` does: header present,
 * well-formed, timestamp within the tolerance, signature matches (under which secret), then
 * whether the body is a Mappa event; plus the hints for an old capture and a final newline.
 */
export async function explainDelivery(input: {
  body: Uint8Array;
  headers: ReadonlyArray<readonly [string, string]>;
  secrets: readonly string[];
  now: number;
  toleranceSec?: number;
}): Promise<Explanation> {
  const { body, secrets, now } = input;
  const toleranceSec = input.toleranceSec ?? DEFAULT_TOLERANCE_SEC;
  const found = findSignatureHeader(input.headers);
  const headers: Record<string, string> =
    found === undefined ? {} : { [found.name]: found.value.trim() };
  const header = found?.value.trim() ?? "";

  let failure: MappaWebhookError | undefined;
  let secretIndex = -1;
  try {
    secretIndex = (
      await verifySignature({ payload: body, headers, secret: secrets, now, toleranceSec })
    ).secretIndex;
  } catch (error) {
    if (!isMappaWebhookError(error)) throw error;
    failure = error;
  }
  const failedAt =
    failure === undefined ? -1 : SIGNATURE_CHECKS.findIndex((c) => c[2] === failure?.code);

  const checks: Check[] = [];
  const notes: string[] = [];
  const shape = failedAt === -1 || failedAt > 1 ? describeHeader(header) : undefined;
  const skew = shape === undefined ? undefined : now - shape.t;
  SIGNATURE_CHECKS.forEach(([id, label], index) => {
    if (failedAt !== -1 && index > failedAt) {
      checks.push({ id, label, ok: null, detail: "not checked" });
      return;
    }
    if (index === failedAt && failure !== undefined) {
      checks.push({ id, label, ok: false, detail: plainMessage(failure) });
      return;
    }
    const detail =
      id === "header_present"
        ? (found?.name ?? "mappa-signature")
        : id === "header_well_formed"
          ? `t=${shape?.t}, ${shape?.count} v1 signature${shape?.count === 1 ? "" : "s"}`
          : id === "timestamp"
            ? `${skewText(skew ?? 0)} (tolerance ${toleranceSec} s)`
            : secrets.length === 1
              ? "under secret #1"
              : `under secret #${secretIndex + 1} of ${secrets.length}${secretIndex > 0 ? " (an older secret is still in use)" : ""}`;
    checks.push({ id, label, ok: true, detail });
  });
  if (failure?.hint !== undefined) notes.push(failure.hint);

  if (failure?.code === "timestamp_outside_tolerance" && shape !== undefined) {
    const atCapture = await genuineAt(body, headers, secrets, shape.t);
    notes.push(
      atCapture
        ? "The signature itself matches this body and secret: the delivery is genuine but old (a replay), or a clock is wrong. Pass --now <t> to check it as of its own time."
        : "The signature would not match at its own time either: the body or the secret differs too.",
    );
  }
  if (
    failure?.code === "signature_mismatch" &&
    /\r?\n$/.test(new TextDecoder().decode(body.subarray(-2)))
  ) {
    const trimmed = Buffer.from(body)
      .toString("utf8")
      .replace(/\r?\n$/, "");
    const withoutNewline = await verifySignature({
      payload: trimmed,
      headers,
      secret: secrets,
      now,
      toleranceSec,
    })
      .then(() => true)
      .catch(() => false);
    if (withoutNewline) {
      notes.push(
        "The signature matches the body WITHOUT the file's final newline: an editor or `echo` added it. The delivery itself is genuine; save the body without a trailing newline (printf '%s' …).",
      );
    }
  }

  let event: MappaEvent | undefined;
  let eventError: MappaWebhookError | undefined;
  try {
    event = parseEvent(body);
    checks.push({
      id: "event",
      label: "body is a Mappa event",
      ok: true,
      detail: `${event.type} ${event.id ?? "(no id)"}${event.known ? "" : " (a type this tool does not know: receivers accept and ignore it)"}`,
    });
  } catch (error) {
    if (!isMappaWebhookError(error)) throw error;
    eventError = error;
    checks.push({
      id: "event",
      label: "body is a Mappa event",
      ok: false,
      detail: plainMessage(error),
    });
  }

  const firstError = failure ?? eventError;
  const explanation: Explanation = {
    valid: failure === undefined && eventError === undefined,
    now,
    toleranceSec,
    checks,
    notes,
  };
  if (found !== undefined) explanation.headerName = found.name;
  if (shape !== undefined) {
    explanation.timestamp = shape.t;
    explanation.skewSec = skew ?? 0;
  }
  if (secretIndex >= 0) explanation.secretIndex = secretIndex;
  if (event !== undefined) {
    explanation.event = { id: event.id, type: event.type, known: event.known };
  }
  if (firstError !== undefined) {
    explanation.error = {
      code: firstError.code,
      message: plainMessage(firstError),
      ...(firstError.hint === undefined ? {} : { hint: firstError.hint }),
    };
  }
  return explanation;
}

function genuineAt(
  body: Uint8Array,
  headers: Record<string, string>,
  secrets: readonly string[],
  at: number,
): Promise<boolean> {
  return verifySignature({ payload: body, headers, secret: secrets, now: at })
    .then(() => true)
    .catch(() => false);
}

/**
 * The secret that signed this body at the signature's own time (ignoring its age), if any of
 * `secrets` did: a replay can then carry a fresh signature made with the same secret.
 */
export async function signingSecret(
  body: Uint8Array,
  headers: ReadonlyArray<readonly [string, string]>,
  secrets: readonly string[],
): Promise<string | undefined> {
  const found = findSignatureHeader(headers);
  if (found === undefined) return undefined;
  const { t } = describeHeader(found.value);
  if (!Number.isFinite(t)) return undefined;
  try {
    const { secretIndex } = await verifySignature({
      payload: body,
      headers: { [found.name]: found.value.trim() },
      secret: secrets,
      now: t,
    });
    return secrets[secretIndex];
  } catch {
    return undefined;
  }
}
