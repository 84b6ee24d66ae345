import { readFile } from "node:fs/promises";
import {
  DEFAULT_TOLERANCE_SEC,
  isMappaWebhookError,
  type MappaEvent,
  type MappaWebhookError,
  parseEvent,
  verifySignature,
} from "@mappa-webhooks/core";
import {
  EXIT_FAILED,
  EXIT_OK,
  parseCommandArgs,
  readNumber,
  readSecrets,
  UsageError,
} from "../args.js";
import { plainMessage } from "../explain.js";
import { colorEnabled, createStyle } from "../output.js";

export const VERIFY_HELP = `Explain why a captured delivery does or does not verify.

Usage
  mappa-webhooks verify --header <value> --body-file <file> [options]

Options
  --header <value>     The mappa-signature header's value (t=…,v1=…); "mappa-signature: …" works too
  --body-file <file>   The raw body exactly as received ("-" reads standard input)
  --secret <secret>    Signing secret (default: $MAPPA_WEBHOOK_SECRET); repeat it to try several
  --now <time>         The time to check against: unix seconds or an ISO date (default: now)
  --tolerance <s>      Allowed clock difference in seconds (default ${DEFAULT_TOLERANCE_SEC})
  --json               Print the checks as JSON
  -h, --help           Show this help

Checks, in the order a receiver runs them: the header is present, it is well-formed, its
timestamp is within the tolerance, a v1 signature matches the body under one of the secrets;
then whether the body is a Mappa event. A receiver stops at an old timestamp; verify still
checks the signature as of the time it was made, to tell a genuine old capture (pass
--now <t> or a larger --tolerance to check it as of then) from a forged one. Hints name the
likely cause, e.g. a final newline an editor added to the body file.
Exit status: 0 valid, 1 not valid, 2 bad input.

Example
  mappa-webhooks verify --header "t=1768651500,v1=5d4e…" --body-file body.json --now 1768651500`;

const OPTIONS = {
  header: { type: "string" },
  "body-file": { type: "string" },
  secret: { type: "string", multiple: true },
  now: { type: "string" },
  tolerance: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** One line of the explanation: passed, failed, or not reached because an earlier one failed. */
interface Check {
  id: "header_present" | "header_well_formed" | "timestamp" | "signature" | "event";
  label: string;
  ok: boolean | null;
  detail: string;
}

const SIGNATURE_CHECKS = [
  ["header_present", "signature header present", "missing_signature"],
  ["header_well_formed", "header well-formed", "malformed_signature"],
  ["timestamp", "timestamp within tolerance", "timestamp_outside_tolerance"],
  ["signature", "signature matches the body", "signature_mismatch"],
] as const;

function readNow(value: string | undefined): number {
  if (value === undefined) return Math.floor(Date.now() / 1000);
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) {
    throw new UsageError(`--now must be unix seconds or an ISO date, got "${value}"`, "verify");
  }
  return Math.floor(ms / 1000);
}

async function readBody(file: string | undefined): Promise<Uint8Array> {
  if (file === undefined) {
    throw new UsageError("--body-file is required: the raw body exactly as received", "verify");
  }
  if (file === "-") {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }
  try {
    return await readFile(file);
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(
      `cannot read --body-file ${file}${code === "ENOENT" ? ": no such file" : `: ${code ?? String(error)}`}`,
      "verify",
    );
  }
}

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

export async function verify(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("verify", argv, OPTIONS, 0);
  if (values.help) {
    process.stdout.write(`${VERIFY_HELP}\n`);
    return EXIT_OK;
  }
  const secrets = readSecrets("verify", values.secret);
  if (values.header === undefined) {
    throw new UsageError(
      "--header is required: the value of the mappa-signature header (t=…,v1=…)",
      "verify",
    );
  }
  // Accept a whole header line pasted from a log.
  const header = values.header.replace(/^\s*(mappa|conduit)-signature\s*:\s*/i, "").trim();
  const now = readNow(values.now);
  const toleranceSec =
    readNumber("verify", "tolerance", values.tolerance, { min: 0 }) ?? DEFAULT_TOLERANCE_SEC;
  const body = await readBody(values["body-file"]);

  const headers = { "mappa-signature": header };
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

  // What a receiver would answer: the first check that fails, as of --now.
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
        ? "mappa-signature"
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

  const valid = failure === undefined && eventError === undefined;
  const firstError = failure ?? eventError;
  const codes = [failure, signatureFailure, eventError]
    .filter((error, index, all) => error !== undefined && all.indexOf(error) === index)
    .map((error) => error?.code);
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          valid,
          now,
          toleranceSec,
          ...(shape === undefined ? {} : { timestamp: shape.t, skewSec: skew }),
          ...(secretIndex >= 0 ? { secretIndex } : {}),
          checks,
          notes,
          ...(event === undefined
            ? {}
            : {
                event: {
                  id: event.id,
                  type: event.type,
                  known: event.known,
                  createdAt: event.createdAt,
                  timestamp: event.timestamp,
                  data: event.data,
                },
              }),
          ...(firstError === undefined
            ? {}
            : {
                error: {
                  code: firstError.code,
                  message: plainMessage(firstError),
                  ...(firstError.hint === undefined ? {} : { hint: firstError.hint }),
                },
              }),
        },
        null,
        2,
      )}\n`,
    );
    return valid ? EXIT_OK : EXIT_FAILED;
  }

  const style = createStyle(colorEnabled(process.stdout));
  const lines = [style.dim(`Checking against t=${now} with a ${toleranceSec} s tolerance`)];
  for (const check of checks) {
    const mark =
      check.ok === true ? style.green("✓") : check.ok === false ? style.red("✗") : style.dim("–");
    const label = check.ok === null ? style.dim(check.label) : check.label;
    lines.push(`  ${mark} ${label}: ${check.ok === null ? style.dim(check.detail) : check.detail}`);
  }
  for (const note of notes) lines.push(`  ${style.yellow(`hint: ${note}`)}`);
  lines.push(
    valid
      ? style.green("✓ valid: a receiver would accept this delivery")
      : style.red(`✗ not valid: ${codes.join(", ")}`),
  );
  process.stdout.write(`${lines.join("\n")}\n`);
  return valid ? EXIT_OK : EXIT_FAILED;
}
