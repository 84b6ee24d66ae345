import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import {
  createTestEvent,
  type DeliveryAttempt,
  MAPPA_RETRY_SCHEDULE_MS,
  simulateDelivery,
  TEST_EVENT_SHAPES,
  type TestEventShape,
} from "@mappa-webhooks/testing";
import { fixFor, readAnswerBody } from "../answers.js";
import {
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  parseCommandArgs,
  RUN,
  readHttpUrl,
  readNumber,
  readSecrets,
  UsageError,
} from "../args.js";
import {
  colorEnabled,
  createSpinner,
  createStyle,
  formatDuration,
  jsonText,
  safe,
} from "../output.js";

export const TRIGGER_HELP = `Send a realistic, signed Mappa event to a URL, the way Mappa delivers it.

Usage
  ${RUN} trigger <event-type> --url <url> [options]

Event types
  ${MAPPA_EVENT_TYPES.join(", ")}

Options
  --url <url>          Where to POST the event (required), e.g. http://127.0.0.1:3000/webhooks/mappa;
                       a bare host:port (localhost:3000/webhooks/mappa) means http://
  --secret <secret>    Signing secret (default: $MAPPA_WEBHOOK_SECRET)
  --data <json>        JSON object deep-merged into the event's data, e.g. '{"jobId":"job_1"}'
  --data-file <path>   The same, read from a file
  --id <id>            Event id (default: a fresh evt_… id); the data's jobId, reportId and
                       matchingId follow from it (unless --data sets them): reuse one to send
                       a duplicate
  --shape <shape>      The event's wire shape (default current):
                         current         {id, type, createdAt, timestamp, data}, status "succeeded"
                         guide           {id, type, createdAt, data}, status "completed"
                         mappa-node-1.2  {type, timestamp, data}, no id
  --no-retry           Send once instead of following Mappa's retry schedule
  --time-scale <n>     Multiply the waits between retries, e.g. 0.01 (default 1: 5 s, 30 s, 5 min, 30 min);
                       Ctrl-C stops a delivery that is waiting to retry
  --timeout <ms>       Give up on one attempt after this long (default 30000)
  --allow-unknown      Send an event type this tool does not know
  --json               Print one JSON report instead of the live view
  -h, --help           Show this help

A 2xx answer of {"duplicate":true} is shown as a duplicate: the receiver already had this
event (same type and data.jobId for a known type, whatever the id; same id for another type)
and did not take it again. That it was received before does not say it was handled: an inbox only stores events,
its workers handle them later. An error answer that names a known set-up mistake (e.g.
body_already_parsed: a JSON body parser ran before the webhook route) is followed by its fix.

Exit status: 0 delivered, 1 abandoned (every attempt answered non-2xx), 2 bad input or the URL
could not be reached, 130 stopped with Ctrl-C.

Examples
  ${RUN} trigger report.failed --url http://127.0.0.1:3000/webhooks/mappa \\
    --data '{"error":{"code":"audio_too_short"}}' --time-scale 0.01
  ${RUN} trigger report.completed --url localhost:3000/webhooks/mappa --shape guide`;

const OPTIONS = {
  url: { type: "string" },
  secret: { type: "string" },
  data: { type: "string" },
  "data-file": { type: "string" },
  id: { type: "string" },
  shape: { type: "string" },
  "no-retry": { type: "boolean" },
  "time-scale": { type: "string" },
  timeout: { type: "string" },
  "allow-unknown": { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

function parseData(text: string, source: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new UsageError(`${source} is not valid JSON: ${reason}`, "trigger");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`${source} must be a JSON object, e.g. '{"jobId":"job_1"}'`, "trigger");
  }
  return value as Record<string, unknown>;
}

async function readData(
  inline: string | undefined,
  file: string | undefined,
): Promise<Record<string, unknown> | undefined> {
  if (inline !== undefined && file !== undefined) {
    throw new UsageError("pass --data or --data-file, not both", "trigger");
  }
  if (inline !== undefined) return parseData(inline, "--data");
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(
      `cannot read --data-file ${file}${code === "ENOENT" ? ": no such file" : `: ${code ?? String(error)}`}`,
      "trigger",
    );
  }
  return parseData(text, `--data-file ${file}`);
}

/**
 * With `--id`, the ids in `data` (`jobId`, and `reportId` or `matchingId`) follow from it, in
 * the cuid form Mappa uses: the same `--id` sends the same job's outcome again, which receivers
 * deduplicate on (`~job:<type>:<jobId>`), as they would a re-delivery from Mappa. `--data` wins.
 */
function idsFromEventId(id: string, type: string): Record<string, string> {
  const derived = (field: string) =>
    `cm${createHash("sha256").update(`${field}:${id}`).digest("hex").slice(0, 23)}`;
  return {
    jobId: derived("jobId"),
    ...(type === "report.completed" ? { reportId: derived("reportId") } : {}),
    ...(type === "matching.completed" ? { matchingId: derived("matchingId") } : {}),
  };
}

function readUrl(value: string | undefined): URL {
  if (value === undefined) {
    throw new UsageError(
      "--url is required, e.g. --url http://127.0.0.1:3000/webhooks/mappa",
      "trigger",
    );
  }
  return readHttpUrl("trigger", "--url", value);
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host lookup failed",
  ECONNRESET: "connection reset",
  TIMEOUT: "timed out",
  UND_ERR_SOCKET: "connection closed",
};

/**
 * True when a 2xx answer says the receiver already had this event (its idempotency key):
 * `{"received":true,"duplicate":true}`, what receivers on @mappa-webhooks/core send. It may
 * have handled it, or only stored it for a worker (an inbox): either way it did not take it again.
 */
export function isDuplicateAnswer(attempt: DeliveryAttempt): boolean {
  return attempt.ok && readAnswerBody(attempt.responseBody).duplicate;
}

/**
 * `500 handler_failed`, `200 (duplicate: already received)`, `connection refused (ECONNREFUSED)`:
 * the outcome in a few words, safe to print.
 */
export function describeAttempt(attempt: DeliveryAttempt): string {
  if (attempt.status !== undefined) {
    if (isDuplicateAnswer(attempt)) return `${attempt.status} (duplicate: already received)`;
    return `${attempt.status}${errorCodeOf(attempt)}`;
  }
  const code = attempt.errorCode ?? "NETWORK_ERROR";
  const reason = NETWORK_REASONS[code] ?? attempt.error ?? "network error";
  // Socket errors carry codes like ECONNREFUSED; others (fetch's "bad port") only a class name.
  return safe(/^[A-Z][A-Z0-9_]+$/.test(code) ? `${reason} (${code})` : reason);
}

/** ` handler_failed` from a JSON error answer, or "" (not JSON: the status says enough). */
function errorCodeOf(attempt: DeliveryAttempt): string {
  const { error } = readAnswerBody(attempt.responseBody);
  return error === undefined ? "" : ` ${safe(error)}`;
}

/** The fix for what an error answer names (body_already_parsed, or the receiver's own `fix`). */
function answerFix(attempt: DeliveryAttempt): string | undefined {
  if (attempt.ok || attempt.status === undefined) return undefined;
  const answer = readAnswerBody(attempt.responseBody);
  const fix = fixFor(answer);
  if (fix === undefined) return undefined;
  return safe(answer.error === undefined ? `fix: ${fix}` : `${answer.error}: ${fix}`);
}

/** Why the first attempt failed, when the cause is a usual set-up mistake; else undefined. */
function setupHint(attempt: DeliveryAttempt, url: URL): string | undefined {
  if (attempt.status === undefined) {
    return `nothing answered at ${url.origin}: is the receiver running, and is the URL right?`;
  }
  const code = errorCodeOf(attempt).trim();
  if (attempt.status === 401 && code === "signature_mismatch") {
    return "the receiver refused the signature: does it use the same secret as --secret (or MAPPA_WEBHOOK_SECRET)?";
  }
  if (attempt.status === 404) {
    return `nothing handles ${url.pathname} there: check the path (e.g. /webhooks/mappa).`;
  }
  return undefined;
}

/** Retries still to come wait this long in total (scaled) before the hint to shorten them. */
const LONG_WAIT_MS = 30_000;
/** The scale suggested to see the whole schedule quickly: 36 min → about 21 s. */
const SUGGESTED_SCALE = 0.01;

function readShape(value: string | undefined): TestEventShape {
  if (value === undefined) return "current";
  if (!(TEST_EVENT_SHAPES as readonly string[]).includes(value)) {
    throw new UsageError(
      `--shape must be one of ${TEST_EVENT_SHAPES.join(", ")}, got "${value}"`,
      "trigger",
    );
  }
  return value as TestEventShape;
}

export async function trigger(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("trigger", argv, OPTIONS, 1);
  if (values.help) {
    process.stdout.write(`${TRIGGER_HELP}\n`);
    return EXIT_OK;
  }
  const type = positionals[0];
  if (type === undefined || type === "") {
    throw new UsageError(
      `which event? e.g. ${RUN} trigger report.completed --url <url> (known: ${MAPPA_EVENT_TYPES.join(", ")})`,
      "trigger",
    );
  }
  if (!(MAPPA_EVENT_TYPES as readonly string[]).includes(type) && !values["allow-unknown"]) {
    throw new UsageError(
      `unknown event type "${type}"; known types: ${MAPPA_EVENT_TYPES.join(", ")} (pass --allow-unknown to send it anyway)`,
      "trigger",
    );
  }
  const url = readUrl(values.url);
  const [secret] = readSecrets("trigger", values.secret);
  const shape = readShape(values.shape);
  const timeScale = readNumber("trigger", "time-scale", values["time-scale"], { min: 0 }) ?? 1;
  const timeoutMs = readNumber("trigger", "timeout", values.timeout, { min: 1 }) ?? 30_000;
  const data = await readData(values.data, values["data-file"]);
  if (values.id === "") throw new UsageError("--id is empty", "trigger");
  if (values.id !== undefined && shape === "mappa-node-1.2") {
    throw new UsageError(
      '--id cannot be used with --shape mappa-node-1.2: that shape has no id (receivers deduplicate it on its type and data.jobId; repeat --data \'{"jobId":"…"}\' to send a duplicate)',
      "trigger",
    );
  }
  const merged = values.id === undefined ? data : { ...idsFromEventId(values.id, type), ...data };
  const event: { id?: string; type: string; data: unknown } = createTestEvent(
    type,
    {
      ...(merged === undefined ? {} : { data: merged }),
      ...(values.id === undefined ? {} : { id: values.id }),
    },
    { shape },
  );
  const schedule = values["no-retry"] ? [0] : MAPPA_RETRY_SCHEDULE_MS;

  const json = values.json === true;
  const style = createStyle(colorEnabled(process.stdout));
  const spinner = createSpinner(process.stdout, !json && process.stdout.isTTY === true);
  const print = (line: string) => {
    if (!json) process.stdout.write(`${line}\n`);
  };
  /** Advice while the delivery runs: on stdout with the live view, on stderr beside --json. */
  const advise = (line: string) => {
    if (json) process.stderr.write(`hint: ${line}\n`);
    else print(`  ${style.yellow(`hint: ${line}`)}`);
  };
  const scaleNote = (ms: number) =>
    timeScale === 1 ? "" : style.dim(` (time-scaled to ${formatDuration(ms * timeScale)})`);

  const label = event.id ?? style.dim("(no id)");
  const shapeNote = shape === "current" ? "" : style.dim(` [${shape} shape]`);
  print(`${style.bold(type)} ${style.dim(label)}${shapeNote} → POST ${url.href}`);

  // Ctrl-C while Mappa's schedule runs: say where the delivery stood, then exit 130.
  const attempts: DeliveryAttempt[] = [];
  const onInterrupt = () => {
    spinner.stop();
    const sent = attempts.length;
    const summary = `stopped with Ctrl-C after ${sent} attempt${sent === 1 ? "" : "s"}; Mappa would have kept retrying`;
    if (json) {
      process.stdout.write(
        `${jsonText({ url: url.href, shape, event, delivered: false, interrupted: true, attempts }, 2)}\n`,
      );
    } else print(style.red(`✗ ${summary}`));
    process.exit(130);
  };
  process.once("SIGINT", onInterrupt);

  // A fix named by an answer is given once, right after the attempt that got it.
  let fixGiven = false;
  let report: Awaited<ReturnType<typeof simulateDelivery>>;
  try {
    report = await simulateDelivery(url, event, {
      secret: secret as string,
      schedule,
      timeScale,
      timeoutMs,
      onAttemptStart: ({ attempt, maxAttempts }) =>
        spinner.start(`attempt ${attempt}/${maxAttempts} sending…`),
      onAttempt: (attempt) => {
        attempts.push(attempt);
        const mark = attempt.ok ? style.green("✓") : style.red("✗");
        const outcome = attempt.ok
          ? style.green(describeAttempt(attempt))
          : style.red(describeAttempt(attempt));
        const line = `  ${mark} attempt ${attempt.attempt}/${schedule.length}  ${outcome}  ${style.dim(`${attempt.latencyMs} ms`)}`;
        if (json) spinner.stop();
        else spinner.stop(line);
        const fix = fixGiven ? undefined : answerFix(attempt);
        if (fix !== undefined) {
          fixGiven = true;
          advise(fix);
        }
      },
      onRetryScheduled: ({ attempt, delayMs, scaledDelayMs }) => {
        print(style.dim(`    next attempt in ${formatDuration(delayMs)}`) + scaleNote(delayMs));
        if (attempt === 2) {
          // After the first failure: the likely cause, and how not to wait 36 minutes for it.
          const first = attempts[0];
          const cause = first === undefined || fixGiven ? undefined : setupHint(first, url);
          if (cause !== undefined) advise(cause);
          const remainingMs = schedule.slice(1).reduce((sum, ms) => sum + ms, 0) * timeScale;
          if (remainingMs >= LONG_WAIT_MS) {
            const total = schedule.slice(1).reduce((sum, ms) => sum + ms, 0);
            advise(
              `Mappa's schedule retries for ${formatDuration(remainingMs)} more. To see it all quickly, run again with --time-scale ${SUGGESTED_SCALE} (about ${formatDuration(total * SUGGESTED_SCALE)}), or --no-retry to send once; Ctrl-C stops now.`,
            );
          }
        }
        const due = performance.now() + scaledDelayMs;
        spinner.start(
          () =>
            `attempt ${attempt}/${schedule.length} in ${formatDuration(Math.max(0, due - performance.now()))}…`,
        );
      },
    });
  } finally {
    process.off("SIGINT", onInterrupt);
  }

  const unreachable = report.attempts.every((attempt) => attempt.status === undefined);
  const last = report.attempts[report.attempts.length - 1] as DeliveryAttempt;
  const duplicate = report.delivered && isDuplicateAnswer(last);
  if (json) {
    process.stdout.write(
      `${jsonText(
        {
          url: url.href,
          shape,
          event,
          delivered: report.delivered,
          duplicate,
          abandoned: report.abandoned,
          unreachable,
          attempts: report.attempts.map((attempt) => ({
            ...attempt,
            duplicate: isDuplicateAnswer(attempt),
          })),
          durationMs: report.durationMs,
        },
        2,
      )}\n`,
    );
  } else if (report.delivered) {
    print(
      style.green(`✓ delivered on attempt ${last.attempt}`) +
        style.dim(` after ${formatDuration(report.durationMs)}`) +
        (duplicate
          ? style.yellow(
              ": a duplicate, the receiver already had this event and did not take it again (handled before, or stored for a worker)",
            )
          : ""),
    );
  } else if (unreachable) {
    process.stderr.write(
      `${style.red("✗")} could not reach ${url.href}: ${describeAttempt(last)}. Is the receiver running, and is the URL right?\n`,
    );
  } else {
    print(
      style.red(
        `✗ abandoned after ${report.attempts.length} attempt${report.attempts.length === 1 ? "" : "s"}`,
      ) + style.dim(values["no-retry"] ? " (--no-retry)" : ": Mappa would give up on this event"),
    );
  }
  if (report.delivered) return EXIT_OK;
  return unreachable ? EXIT_USAGE : EXIT_FAILED;
}
