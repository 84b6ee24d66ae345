import {
  DEFAULT_SIGNATURE_HEADERS,
  DEFAULT_TOLERANCE_SEC,
  isMappaWebhookError,
  type MappaEvent,
  type MappaWebhookError,
  parseEvent,
  parseSignatureHeader,
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
  event?: {
    id: string | undefined;
    type: string;
    known: boolean;
    createdAt: string | undefined;
    timestamp: string | undefined;
    data: unknown;
  };
  error?: { code: string; message: string; hint?: string };
}

const SIGNATURE_CHECKS = [
  ["header_present", "signature header present", "missing_signature"],
  ["header_well_formed", "header well-formed", "malformed_signature"],
  ["timestamp", "timestamp within tolerance", "timestamp_outside_tolerance"],
  ["signature", "signature matches the body", "signature_mismatch"],
] as const;

/** What the header says, read by the core's own parser; undefined when it is malformed. */
function describeHeader(value: string): { t: number; count: number } | undefined {
  try {
    const { timestamp, signatures } = parseSignatureHeader(value);
    return { t: timestamp, count: signatures.length };
  } catch {
    return undefined;
  }
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

/** An explanation, plus the codes of every distinct failure, for a one-line summary. */
export interface ExplainedDelivery {
  explanation: Explanation;
  failedCodes: string[];
}

/**
 * Explains a delivery check by check, the one explanation behind `mappa-webhooks verify` and
 * the inspector: header present, well-formed, timestamp within the tolerance, signature
 * matches (under which secret; for an old capture, as of its own time), then whether the body
 * is a Mappa event; plus hints, the most specific cause first (a final newline alone).
 */
export async function explainDeliveryInDetail(input: {
  body: Uint8Array;
  headers: ReadonlyArray<readonly [string, string]>;
  secrets: readonly string[];
  now: number;
  toleranceSec?: number;
}): Promise<ExplainedDelivery> {
  const { body, secrets, now } = input;
  const toleranceSec = input.toleranceSec ?? DEFAULT_TOLERANCE_SEC;
  const found = findSignatureHeader(input.headers);
  const headers: Record<string, string> =
    found === undefined ? {} : { [found.name]: found.value.trim() };
  const header = found?.value.trim() ?? "";

  type Outcome = { ok: true; secretIndex: number } | { ok: false; error: MappaWebhookError };
  /** Runs the receiver's checks on `payload` as of `at` (unix seconds). */
  const check = async (payload: Uint8Array, at: number): Promise<Outcome> => {
    try {
      const result = await verifySignature({
        payload,
        headers,
        secret: secrets,
        now: at,
        toleranceSec,
      });
      return { ok: true, secretIndex: result.secretIndex };
    } catch (error) {
      if (!isMappaWebhookError(error)) throw error;
      return { ok: false, error };
    }
  };

  // What a receiver would answer: the first check that fails, as of `now`.
  const verdict = await check(body, now);
  const failure = verdict.ok ? undefined : verdict.error;
  let secretIndex = verdict.ok ? verdict.secretIndex : -1;
  const failedAt =
    failure === undefined ? -1 : SIGNATURE_CHECKS.findIndex((c) => c[2] === failure?.code);
  const shape = failedAt === -1 || failedAt > 1 ? describeHeader(header) : undefined;
  const skew = shape === undefined ? undefined : now - shape.t;

  // A receiver stops at an old timestamp; check the signature anyway, as of the time it was
  // made, so the signature line says whether the signature itself matches.
  const asOf = failure?.code === "timestamp_outside_tolerance" ? shape?.t : undefined;
  let signatureFailure = failure?.code === "signature_mismatch" ? failure : undefined;
  if (asOf !== undefined) {
    const own = await check(body, asOf);
    if (own.ok) secretIndex = own.secretIndex;
    else signatureFailure = own.error;
  }
  // An editor's or `echo`'s final newline: does the signature match the body without it?
  let finalNewline = false;
  if (signatureFailure?.code === "signature_mismatch" && body.at(-1) === 0x0a) {
    const cut = body.at(-2) === 0x0d ? 2 : 1;
    finalNewline = (await check(body.subarray(0, body.length - cut), asOf ?? now)).ok;
  }

  const checks: Check[] = [];
  const asOfText = asOf === undefined ? "" : `as of its own time (t=${asOf})`;
  SIGNATURE_CHECKS.forEach(([id, label], index) => {
    if (id === "signature" && (failedAt === -1 || failedAt >= 2)) {
      if (signatureFailure !== undefined) {
        const message = plainMessage(signatureFailure);
        checks.push({
          id,
          label,
          ok: false,
          detail: asOf === undefined ? message : `${asOfText}: ${message}`,
        });
      } else {
        const under =
          secrets.length === 1
            ? "under secret #1"
            : `under secret #${secretIndex + 1} of ${secrets.length}${secretIndex > 0 ? " (an older secret is still in use)" : ""}`;
        checks.push({
          id,
          label,
          ok: true,
          detail: asOf === undefined ? under : `${under}, ${asOfText}`,
        });
      }
      return;
    }
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
          : `${skewText(skew ?? 0)} (tolerance ${toleranceSec} s)`;
    checks.push({ id, label, ok: true, detail });
  });

  // Hints, the most specific cause first: a final newline explains a mismatch on its own.
  const notes: string[] = [];
  if (finalNewline) {
    notes.push(
      "The signature matches the body WITHOUT the file's final newline: an editor or `echo` added it. The delivery itself is genuine; save the body without a trailing newline (printf '%s' …).",
    );
  } else if (signatureFailure?.hint !== undefined) {
    notes.push(signatureFailure.hint);
  } else if (failure?.hint !== undefined && failure !== signatureFailure) {
    notes.push(failure.hint);
  }
  if (asOf !== undefined && (signatureFailure === undefined || finalNewline)) {
    notes.push(
      `The signature itself matches${finalNewline ? " (without the final newline)" : ""}: the delivery is genuine, but it was signed ${skewText(skew ?? 0)}, beyond the ${toleranceSec} s tolerance, so a receiver refuses it as a possible replay (or a clock is wrong). To check a saved capture, pass --now ${asOf} (when it was signed) or a larger --tolerance.`,
    );
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
  // Built in the order `verify --json` prints it.
  const explanation: Explanation = {
    valid: failure === undefined && eventError === undefined,
    now,
    toleranceSec,
  } as Explanation;
  if (found !== undefined) explanation.headerName = found.name;
  if (shape !== undefined) {
    explanation.timestamp = shape.t;
    explanation.skewSec = skew ?? 0;
  }
  if (secretIndex >= 0) explanation.secretIndex = secretIndex;
  explanation.checks = checks;
  explanation.notes = notes;
  if (event !== undefined) {
    explanation.event = {
      id: event.id,
      type: event.type,
      known: event.known,
      createdAt: event.createdAt,
      timestamp: event.timestamp,
      data: event.data,
    };
  }
  if (firstError !== undefined) {
    explanation.error = {
      code: firstError.code,
      message: plainMessage(firstError),
      ...(firstError.hint === undefined ? {} : { hint: firstError.hint }),
    };
  }
  const failedCodes = [failure, signatureFailure, eventError]
    .filter((error, index, all) => error !== undefined && all.indexOf(error) === index)
    .map((error) => (error as MappaWebhookError).code);
  return { explanation, failedCodes };
}

/** {@link explainDeliveryInDetail}'s explanation alone, as the inspector shows it. */
export async function explainDelivery(
  input: Parameters<typeof explainDeliveryInDetail>[0],
): Promise<Explanation> {
  return (await explainDeliveryInDetail(input)).explanation;
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
  const t = describeHeader(found.value.trim())?.t;
  if (t === undefined) return undefined;
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
