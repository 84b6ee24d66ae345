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
then whether the body is a Mappa event. Exit status: 0 valid, 1 not valid, 2 bad input.

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
        ? "mappa-signature"
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

  // Help the two most common puzzles: an old capture, and an editor's final newline.
  if (failure?.code === "timestamp_outside_tolerance" && shape !== undefined) {
    const atCapture = await verifySignature({
      payload: body,
      headers,
      secret: secrets,
      now: shape.t,
    })
      .then(() => true)
      .catch(() => false);
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

  const valid = failure === undefined && eventError === undefined;
  const firstError = failure ?? eventError;
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
            : { event: { id: event.id, type: event.type, known: event.known, data: event.data } }),
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
      : style.red(`✗ not valid: ${firstError?.code}`),
  );
  process.stdout.write(`${lines.join("\n")}\n`);
  return valid ? EXIT_OK : EXIT_FAILED;
}
