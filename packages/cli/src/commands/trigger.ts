import { readFile } from "node:fs/promises";
import { MAPPA_EVENT_TYPES } from "@mappa-webhooks/core";
import {
  createTestEvent,
  type DeliveryAttempt,
  MAPPA_RETRY_SCHEDULE_MS,
  simulateDelivery,
} from "@mappa-webhooks/testing";
import {
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  parseCommandArgs,
  readNumber,
  readSecrets,
  UsageError,
} from "../args.js";
import { colorEnabled, createSpinner, createStyle, formatDuration } from "../output.js";

export const TRIGGER_HELP = `Send a realistic, signed Mappa event to a URL, the way Mappa delivers it.

Usage
  mappa-webhooks trigger <event-type> --url <url> [options]

Event types
  ${MAPPA_EVENT_TYPES.join(", ")}

Options
  --url <url>          Where to POST the event (required), e.g. http://127.0.0.1:3000/webhooks/mappa
  --secret <secret>    Signing secret (default: $MAPPA_WEBHOOK_SECRET)
  --data <json>        JSON object deep-merged into the event's data, e.g. '{"jobId":"job_1"}'
  --data-file <path>   The same, read from a file
  --id <id>            Event id (default: a fresh evt_… id); reuse one to send a duplicate
  --no-retry           Send once instead of following Mappa's retry schedule
  --time-scale <n>     Multiply the waits between retries, e.g. 0.01 (default 1: 5 s, 30 s, 5 min, 30 min)
  --timeout <ms>       Give up on one attempt after this long (default 30000)
  --allow-unknown      Send an event type this tool does not know
  --json               Print one JSON report instead of the live view
  -h, --help           Show this help

Exit status: 0 delivered, 1 abandoned (every attempt answered non-2xx), 2 bad input or the URL
could not be reached.

Example
  mappa-webhooks trigger report.failed --url http://127.0.0.1:3000/webhooks/mappa \\
    --data '{"error":{"code":"audio_too_short"}}' --time-scale 0.01`;

const OPTIONS = {
  url: { type: "string" },
  secret: { type: "string" },
  data: { type: "string" },
  "data-file": { type: "string" },
  id: { type: "string" },
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

function readUrl(value: string | undefined): URL {
  if (value === undefined) {
    throw new UsageError(
      "--url is required, e.g. --url http://127.0.0.1:3000/webhooks/mappa",
      "trigger",
    );
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(
      `--url "${value}" is not a URL; include the scheme, e.g. http://127.0.0.1:3000/webhooks/mappa`,
      "trigger",
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--url must be http:// or https://, got ${url.protocol}`, "trigger");
  }
  return url;
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host lookup failed",
  ECONNRESET: "connection reset",
  TIMEOUT: "timed out",
  UND_ERR_SOCKET: "connection closed",
};

/** `500 handler_failed`, `connection refused (ECONNREFUSED)`: the outcome in a few words. */
export function describeAttempt(attempt: DeliveryAttempt): string {
  if (attempt.status !== undefined) {
    let code = "";
    try {
      const body = JSON.parse(attempt.responseBody ?? "") as { error?: unknown };
      if (typeof body.error === "string") code = ` ${body.error}`;
    } catch {
      // Not JSON: the status says enough.
    }
    return `${attempt.status}${code}`;
  }
  const code = attempt.errorCode ?? "NETWORK_ERROR";
  const reason = NETWORK_REASONS[code] ?? attempt.error ?? "network error";
  // Socket errors carry codes like ECONNREFUSED; others (fetch's "bad port") only a class name.
  return /^[A-Z][A-Z0-9_]+$/.test(code) ? `${reason} (${code})` : reason;
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
      `which event? e.g. mappa-webhooks trigger report.completed --url <url> (known: ${MAPPA_EVENT_TYPES.join(", ")})`,
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
  const timeScale = readNumber("trigger", "time-scale", values["time-scale"], { min: 0 }) ?? 1;
  const timeoutMs = readNumber("trigger", "timeout", values.timeout, { min: 1 }) ?? 30_000;
  const data = await readData(values.data, values["data-file"]);
  if (values.id === "") throw new UsageError("--id is empty", "trigger");
  const event = createTestEvent(type, {
    ...(data === undefined ? {} : { data }),
    ...(values.id === undefined ? {} : { id: values.id }),
  });
  const schedule = values["no-retry"] ? [0] : MAPPA_RETRY_SCHEDULE_MS;

  const json = values.json === true;
  const style = createStyle(colorEnabled(process.stdout));
  const spinner = createSpinner(process.stdout, !json && process.stdout.isTTY === true);
  const print = (line: string) => {
    if (!json) process.stdout.write(`${line}\n`);
  };
  const scaleNote = (ms: number) =>
    timeScale === 1 ? "" : style.dim(` (time-scaled to ${formatDuration(ms * timeScale)})`);

  print(`${style.bold(type)} ${style.dim(event.id)} → POST ${url.href}`);
  const report = await simulateDelivery(url, event, {
    secret: secret as string,
    schedule,
    timeScale,
    timeoutMs,
    onAttemptStart: ({ attempt, maxAttempts }) =>
      spinner.start(`attempt ${attempt}/${maxAttempts} sending…`),
    onAttempt: (attempt) => {
      const mark = attempt.ok ? style.green("✓") : style.red("✗");
      const outcome = attempt.ok
        ? style.green(describeAttempt(attempt))
        : style.red(describeAttempt(attempt));
      const line = `  ${mark} attempt ${attempt.attempt}/${schedule.length}  ${outcome}  ${style.dim(`${attempt.latencyMs} ms`)}`;
      if (json) spinner.stop();
      else spinner.stop(line);
    },
    onRetryScheduled: ({ attempt, delayMs, scaledDelayMs }) => {
      print(style.dim(`    next attempt in ${formatDuration(delayMs)}`) + scaleNote(delayMs));
      const due = performance.now() + scaledDelayMs;
      spinner.start(
        () =>
          `attempt ${attempt}/${schedule.length} in ${formatDuration(Math.max(0, due - performance.now()))}…`,
      );
    },
  });

  const unreachable = report.attempts.every((attempt) => attempt.status === undefined);
  if (json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          url: url.href,
          event,
          delivered: report.delivered,
          abandoned: report.abandoned,
          unreachable,
          attempts: report.attempts,
          durationMs: report.durationMs,
        },
        null,
        2,
      )}\n`,
    );
  } else if (report.delivered) {
    const last = report.attempts.length;
    print(
      style.green(`✓ delivered on attempt ${last}`) +
        style.dim(` after ${formatDuration(report.durationMs)}`),
    );
  } else if (unreachable) {
    const last = report.attempts[report.attempts.length - 1] as DeliveryAttempt;
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
