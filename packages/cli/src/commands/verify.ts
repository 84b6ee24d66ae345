import { readFile } from "node:fs/promises";
import { DEFAULT_TOLERANCE_SEC } from "@mappa-webhooks/core";
import {
  EXIT_FAILED,
  EXIT_OK,
  parseCommandArgs,
  RUN,
  readNumber,
  readSecrets,
  UsageError,
} from "../args.js";
import { explainDeliveryInDetail } from "../inspector/checks.js";
import { colorEnabled, createStyle, jsonText, safe } from "../output.js";

export const VERIFY_HELP = `Explain why a captured delivery does or does not verify.

Usage
  ${RUN} verify --header <value> --body-file <file> [options]

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

Everything printed from the body (its type, id…) has control characters escaped (\\x1b…).

Example
  ${RUN} verify --header "t=1768651500,v1=5d4e…" --body-file body.json --now 1768651500`;

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

  const { explanation, failedCodes } = await explainDeliveryInDetail({
    body,
    headers: [["mappa-signature", header]],
    secrets,
    now,
    toleranceSec,
  });
  const { valid, checks, notes } = explanation;
  if (values.json) {
    const { headerName: _headerName, ...report } = explanation;
    process.stdout.write(`${jsonText(report, 2)}\n`);
    return valid ? EXIT_OK : EXIT_FAILED;
  }

  const style = createStyle(colorEnabled(process.stdout));
  const lines = [style.dim(`Checking against t=${now} with a ${toleranceSec} s tolerance`)];
  for (const check of checks) {
    const mark =
      check.ok === true ? style.green("✓") : check.ok === false ? style.red("✗") : style.dim("–");
    const label = check.ok === null ? style.dim(check.label) : check.label;
    const detail = safe(check.detail);
    lines.push(`  ${mark} ${label}: ${check.ok === null ? style.dim(detail) : detail}`);
  }
  for (const note of notes) lines.push(`  ${style.yellow(`hint: ${safe(note)}`)}`);
  lines.push(
    valid
      ? style.green("✓ valid: a receiver would accept this delivery")
      : style.red(`✗ not valid: ${failedCodes.join(", ")}`),
  );
  process.stdout.write(`${lines.join("\n")}\n`);
  return valid ? EXIT_OK : EXIT_FAILED;
}
