import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { rootCertificates } from "node:tls";
import { MAPPA_EVENT_TYPES, signPayload } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { EXIT_FAILED, EXIT_OK, parseCommandArgs, readNumber, UsageError } from "../args.js";
import {
  checkTls,
  connectTcp,
  isLoopbackName,
  type ProbeAnswer,
  post,
  resolveTarget,
  type Target,
  targetOf,
  unusualJson,
} from "../doctor/probe.js";
import { colorEnabled, createStyle, formatDuration } from "../output.js";

export const DOCTOR_HELP = `Check a deployed webhook endpoint before Mappa delivers to it.

Usage
  mappa-webhooks doctor <url> [options]

Options
  --secret <secret>          The endpoint's signing secret (default: $MAPPA_WEBHOOK_SECRET);
                             without it only the unsigned request is sent
  --event <type>             Event type to send (default doctor.probe, which typed handlers ignore)
  --ca <file>                Also trust this CA certificate (PEM), for a private CA
  --resolve <host:port:addr> Connect to addr for host:port instead of asking DNS (like curl),
                             e.g. to check a server before DNS points at it
  --slow <ms>                An answer slower than this is a problem (default 3000)
  --timeout <ms>             Give up on one request after this long (default 30000)
  --json                     Print the checklist as JSON
  -h, --help                 Show this help

Checks, in order: the host resolves, accepts connections and (for https://) shows a valid
certificate for its name; the URL is https:// (plain http:// on this machine is only a warning);
a POST without a signature is rejected; a correctly signed delivery is accepted, and so is one
with unusual but valid JSON formatting (else the endpoint verifies a re-serialised body); a
signature an hour old is rejected (replays); a duplicate is answered 2xx; every answer is quick.

It says what it will send before sending: at most 5 POST requests, each with an event of type
doctor.probe unless --event says otherwise; receivers built on @mappa-webhooks answer 200 to a
type they do not know and run no typed handler. Exit status: 0 every check passed, 1 a problem
was found (an unreachable endpoint included), 2 bad flags.

Example
  mappa-webhooks doctor https://api.example.com/webhooks/mappa --secret whsec_…`;

const OPTIONS = {
  secret: { type: "string", multiple: true },
  event: { type: "string" },
  ca: { type: "string", multiple: true },
  resolve: { type: "string", multiple: true },
  slow: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** The event type sent unless --event says otherwise: unknown to typed handlers. */
export const DOCTOR_EVENT_TYPE = "doctor.probe";

type Status = "pass" | "fail" | "warn" | "skip";

/** One line of the checklist: plain words first, then what was seen and how to fix it. */
export interface DoctorCheck {
  id:
    | "dns"
    | "tcp"
    | "tls"
    | "https"
    | "unsigned"
    | "valid"
    | "formatting"
    | "replay"
    | "duplicate"
    | "speed";
  status: Status;
  summary: string;
  detail?: string;
  fix?: string;
  answer?: ProbeAnswer;
}

/** What each check is about, for a line that says it was not checked. */
const TITLES: Record<DoctorCheck["id"], string> = {
  https: "HTTPS",
  dns: "DNS",
  tcp: "Connection",
  tls: "TLS certificate",
  unsigned: "Unsigned delivery",
  valid: "Signed delivery",
  formatting: "Unusual JSON formatting",
  replay: "Old signature (replay)",
  duplicate: "Duplicate delivery",
  speed: "Speed",
};

function readUrl(value: string | undefined): URL {
  if (value === undefined) {
    throw new UsageError(
      "which endpoint? e.g. mappa-webhooks doctor https://api.example.com/webhooks/mappa",
      "doctor",
    );
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(
      `"${value}" is not a URL; include the scheme, e.g. https://api.example.com/webhooks/mappa`,
      "doctor",
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`the URL must be https:// (or http://), got ${url.protocol}`, "doctor");
  }
  return url;
}

function readResolve(values: string[] | undefined, target: Target): void {
  for (const value of values ?? []) {
    const match = /^(\[[^\]]+\]|[^:]+):(\d+):(.+)$/.exec(value);
    const address = match?.[3]?.replace(/^\[|\]$/g, "");
    if (match === null || address === undefined || isIP(address) === 0) {
      throw new UsageError(
        `--resolve must be host:port:address with an IP address, e.g. api.example.com:443:127.0.0.1, got "${value}"`,
        "doctor",
      );
    }
    const host = (match[1] as string).replace(/^\[|\]$/g, "").toLowerCase();
    if (host === target.hostname.toLowerCase() && Number(match[2]) === target.port) {
      target.address = address;
    }
  }
}

async function readCa(files: string[] | undefined): Promise<string[] | undefined> {
  if (files === undefined) return undefined;
  const extra: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      const code = (error as { code?: string }).code;
      throw new UsageError(
        `cannot read --ca ${file}${code === "ENOENT" ? ": no such file" : `: ${code ?? String(error)}`}`,
        "doctor",
      );
    }
    if (!text.includes("-----BEGIN CERTIFICATE-----")) {
      throw new UsageError(
        `--ca ${file} is not a PEM certificate (-----BEGIN CERTIFICATE-----)`,
        "doctor",
      );
    }
    extra.push(text);
  }
  return [...rootCertificates, ...extra];
}

const is2xx = (answer: ProbeAnswer) =>
  answer.status !== undefined && answer.status >= 200 && answer.status < 300;

function seen(answer: ProbeAnswer): string {
  if (answer.status === undefined) return `no answer: ${answer.error ?? "network error"}`;
  let code = "";
  try {
    const parsed = JSON.parse(answer.body ?? "") as { error?: unknown };
    if (typeof parsed.error === "string") code = ` ${parsed.error}`;
  } catch {
    // Not JSON: the status says enough.
  }
  const location = answer.location === undefined ? "" : ` → ${answer.location}`;
  return `${answer.status}${code}${location} in ${formatDuration(answer.latencyMs)}`;
}

/** The problem with an answer to a delivery that should have been accepted, in plain words. */
function notAccepted(
  answer: ProbeAnswer,
  what: string,
  eventType: string,
  known: boolean,
): {
  summary: string;
  fix: string;
} {
  const status = answer.status;
  if (status === undefined) {
    return {
      summary: `No answer to ${what}: ${answer.error ?? "network error"}`,
      fix: "Make sure the endpoint answers within the timeout; do slow work after answering.",
    };
  }
  if (status >= 300 && status < 400) {
    return {
      summary: `It redirects ${what} (${status}): Mappa does not follow redirects`,
      fix: `Give Mappa the final URL${answer.location === undefined ? "" : ` (${answer.location})`}.`,
    };
  }
  if (status === 401 || status === 403) {
    return {
      summary: `It rejects ${what} (${status}): its secret is not the one given here, or it checks something else`,
      fix: "Check that --secret is this endpoint's signing secret, and that the app reads the same one (e.g. MAPPA_WEBHOOK_SECRET).",
    };
  }
  if (status === 404 || status === 405) {
    return {
      summary: `There is no webhook route for POST at this URL (${status})`,
      fix: "Check the path (e.g. /webhooks/mappa) and that the route accepts POST.",
    };
  }
  if (status === 400 && !known) {
    return {
      summary: `It rejects an event type it does not know (400 for ${eventType}): when Mappa adds a type, deliveries fail`,
      fix: "Answer 2xx to unknown event types and ignore them (or pass --event report.completed to test with a known type).",
    };
  }
  if (status >= 500) {
    return {
      summary: `It fails on ${what} (${status}): Mappa retries, then gives up on the event`,
      fix: "Look at the app's logs for this request; a handler probably threw.",
    };
  }
  return {
    summary: `It answers ${what} with ${status}, not 2xx: Mappa treats that as a failed delivery`,
    fix: "Answer 2xx once the event is verified and handled.",
  };
}

interface Plan {
  target: Target;
  secret: string | undefined;
  eventType: string;
  known: boolean;
  slowMs: number;
}

async function runChecks(
  plan: Plan,
  onCheck: (check: DoctorCheck) => void,
): Promise<DoctorCheck[]> {
  const { target, secret, eventType, known, slowMs } = plan;
  const { url } = target;
  const checks: DoctorCheck[] = [];
  const add = (check: DoctorCheck) => {
    checks.push(check);
    onCheck(check);
  };
  const skipRest = (ids: DoctorCheck["id"][], why: string) => {
    for (const id of ids)
      add({ id, status: "skip", summary: `${TITLES[id]}: not checked, ${why}` });
  };
  const HTTP_CHECKS: DoctorCheck["id"][] = [
    "unsigned",
    "valid",
    "formatting",
    "replay",
    "duplicate",
    "speed",
  ];

  // 1. The URL, then the connection: DNS, TCP, TLS.
  if (url.protocol === "https:") {
    add({ id: "https", status: "pass", summary: "The URL uses HTTPS, as Mappa requires" });
  } else if (isLoopbackName(target.hostname)) {
    add({
      id: "https",
      status: "warn",
      summary:
        "The URL uses plain http:// on this machine: fine for local testing, but Mappa delivers only to https:// URLs it can reach",
      fix: "Expose it through an HTTPS tunnel (or deploy it) and run doctor against that URL before going live.",
    });
  } else {
    add({
      id: "https",
      status: "fail",
      summary: "The URL uses plain http://: Mappa delivers only to https:// URLs",
      fix: "Serve the endpoint over HTTPS and give Mappa the https:// URL.",
    });
  }
  const resolved = await resolveTarget(target);
  if (!resolved.ok) {
    add({
      id: "dns",
      status: "fail",
      summary: `The host name ${target.hostname} does not resolve: ${resolved.reason}`,
      fix: "Check the URL's host name and its DNS record.",
    });
    skipRest(["tcp", "tls", ...HTTP_CHECKS], "the host could not be found");
    return checks;
  }
  add({
    id: "dns",
    status: "pass",
    summary:
      resolved.how === "literal"
        ? `The URL names an IP address (${resolved.address}): nothing to resolve`
        : resolved.how === "resolve"
          ? `The host name is taken as ${resolved.address} (--resolve)`
          : `The host name resolves: ${target.hostname} → ${resolved.address}`,
  });
  const tcp = await connectTcp(target, resolved.address);
  if (!tcp.ok) {
    add({
      id: "tcp",
      status: "fail",
      summary: `Nothing answers at ${resolved.address} port ${target.port}: ${tcp.reason}`,
      fix: "Check that the server is running, listens on that port, and that a firewall lets Mappa in.",
    });
    skipRest(["tls", ...HTTP_CHECKS], "the endpoint is unreachable");
    return checks;
  }
  add({
    id: "tcp",
    status: "pass",
    summary: `The server accepts connections on port ${target.port} (${formatDuration(tcp.latencyMs)})`,
  });
  if (url.protocol === "https:") {
    const tls = await checkTls(target, tcp.socket);
    if (!tls.ok) {
      add({
        id: "tls",
        status: "fail",
        summary: `The HTTPS certificate is not valid: ${tls.reason}`,
        detail: `TLS check: ${tls.code}`,
        fix: tls.fix,
      });
      tcp.socket.destroy();
      skipRest(HTTP_CHECKS, "the TLS connection is not trusted (nothing was sent)");
      return checks;
    }
    const soon = tls.daysLeft < 14;
    add({
      id: "tls",
      status: soon ? "warn" : "pass",
      summary: soon
        ? `The certificate expires soon: in ${tls.daysLeft} day${tls.daysLeft === 1 ? "" : "s"} (${tls.validTo.toISOString().slice(0, 10)})`
        : `The certificate is valid for ${target.hostname} (issued by ${tls.issuer}, expires in ${tls.daysLeft} days, ${tls.protocol})`,
      ...(soon ? { fix: "Renew it (and automate renewal)." } : {}),
    });
  } else {
    tcp.socket.destroy();
    skipRest(["tls"], "the URL is plain http://");
  }

  // 2. What the endpoint does with deliveries.
  const answers: ProbeAnswer[] = [];
  const send = async (body: string, headers: Record<string, string>) => {
    const answer = await post(target, resolved.address, body, {
      "user-agent": "mappa-webhooks-doctor",
      ...headers,
    });
    answers.push(answer);
    return answer;
  };
  const makeEvent = () => createTestEvent(eventType);

  const unsigned = await send(JSON.stringify(makeEvent()), {});
  if (is2xx(unsigned)) {
    add({
      id: "unsigned",
      status: "fail",
      summary: `It accepts a delivery without a signature (${unsigned.status}): anyone who knows the URL can send fake events`,
      detail: `POST without mappa-signature → ${seen(unsigned)}`,
      fix: "Verify the mappa-signature header on the raw body before acting on a delivery (every @mappa-webhooks adapter does), and answer 401 when it is missing or wrong.",
      answer: unsigned,
    });
  } else if (unsigned.status === undefined) {
    add({
      id: "unsigned",
      status: "fail",
      summary: `No answer to a POST: ${unsigned.error ?? "network error"}`,
      fix: "Check the server answers HTTP requests on this URL.",
      answer: unsigned,
    });
  } else if (unsigned.status >= 300 && unsigned.status < 400) {
    add({
      id: "unsigned",
      status: "fail",
      summary: `It redirects (${unsigned.status}): Mappa does not follow redirects`,
      detail: `POST → ${seen(unsigned)}`,
      fix: `Give Mappa the final URL${unsigned.location === undefined ? "" : ` (${unsigned.location})`}.`,
      answer: unsigned,
    });
  } else if (unsigned.status === 404 || unsigned.status === 405) {
    add({
      id: "unsigned",
      status: "fail",
      summary: `There is no webhook route for POST at this URL (${unsigned.status})`,
      detail: `POST → ${seen(unsigned)}`,
      fix: "Check the path (e.g. /webhooks/mappa) and that the route accepts POST.",
      answer: unsigned,
    });
  } else if (unsigned.status >= 500) {
    add({
      id: "unsigned",
      status: "warn",
      summary: `It rejects a delivery without a signature, but with a server error (${unsigned.status}) instead of 401`,
      detail: `POST without mappa-signature → ${seen(unsigned)}`,
      fix: "Answer 401 for a missing or wrong signature; a 5xx makes it look like your server failed.",
      answer: unsigned,
    });
  } else {
    add({
      id: "unsigned",
      status: "pass",
      summary: `It rejects a delivery without a signature (${seen(unsigned)})`,
      answer: unsigned,
    });
  }

  if (secret === undefined) {
    skipRest(
      ["valid", "formatting", "replay", "duplicate"],
      "pass --secret (or set MAPPA_WEBHOOK_SECRET) to send signed deliveries",
    );
  } else {
    const sign = (body: string, timestamp?: number) =>
      signPayload({ payload: body, secret, ...(timestamp === undefined ? {} : { timestamp }) });
    const baselineBody = JSON.stringify(makeEvent());
    const valid = await send(baselineBody, { "mappa-signature": await sign(baselineBody) });
    const validOk = is2xx(valid);
    if (validOk) {
      add({
        id: "valid",
        status: "pass",
        summary: `It accepts a correctly signed delivery (${seen(valid)})`,
        answer: valid,
      });
    } else {
      add({
        id: "valid",
        status: "fail",
        ...notAccepted(valid, "a correctly signed delivery", eventType, known),
        detail: `signed ${eventType} → ${seen(valid)}`,
        answer: valid,
      });
    }
    const inconclusive = "a correctly signed delivery was not accepted either (see above)";

    const formattedBody = unusualJson(makeEvent());
    const formatted = await send(formattedBody, { "mappa-signature": await sign(formattedBody) });
    if (!validOk) {
      add({
        id: "formatting",
        status: "skip",
        summary: `${TITLES.formatting}: not conclusive, ${inconclusive}`,
        answer: formatted,
      });
    } else if (is2xx(formatted)) {
      add({
        id: "formatting",
        status: "pass",
        summary: `It accepts a signed body with unusual but valid JSON formatting (${seen(formatted)}): it verifies the bytes it received`,
        answer: formatted,
      });
    } else if (formatted.status === 401 || formatted.status === 403) {
      add({
        id: "formatting",
        status: "fail",
        summary: `It rejects a correctly signed body whose JSON is formatted unusually (${formatted.status}): it verifies a re-serialised body, not the bytes it received`,
        detail:
          "Compact JSON passed, the same kind of event with spaces, another key order and \\u escapes did not: the app parses the JSON and verifies JSON.stringify(body). Any delivery whose bytes differ from that gets rejected.",
        fix: "Verify the raw request body before any JSON parser runs (express.raw, Fastify's rawBody, request.text() in Next/Hono); the @mappa-webhooks adapters do this for you.",
        answer: formatted,
      });
    } else {
      add({
        id: "formatting",
        status: "fail",
        ...notAccepted(formatted, "a signed body with unusual JSON formatting", eventType, known),
        detail: `signed, unusually formatted ${eventType} → ${seen(formatted)}`,
        answer: formatted,
      });
    }

    const oldBody = JSON.stringify(makeEvent());
    const old = await send(oldBody, {
      "mappa-signature": await sign(oldBody, Math.floor(Date.now() / 1000) - 3_600),
    });
    if (is2xx(old)) {
      add({
        id: "replay",
        status: "fail",
        summary: `It accepts a signature from an hour ago (${old.status}): a captured delivery can be replayed`,
        detail: `signed with t = now − 3600 s → ${seen(old)}`,
        fix: "Reject signatures whose timestamp is more than 300 s from now (every @mappa-webhooks receiver does).",
        answer: old,
      });
    } else if (!validOk) {
      add({
        id: "replay",
        status: "skip",
        summary: `${TITLES.replay}: not conclusive, ${inconclusive}`,
        answer: old,
      });
    } else if (old.status !== undefined && old.status >= 400 && old.status < 500) {
      add({
        id: "replay",
        status: "pass",
        summary: `It rejects a signature from an hour ago (${seen(old)})`,
        answer: old,
      });
    } else {
      add({
        id: "replay",
        status: "warn",
        summary: `It rejects a signature from an hour ago, but with ${old.status ?? "no answer"} instead of 401`,
        detail: `signed with t = now − 3600 s → ${seen(old)}`,
        fix: "Answer 401 for a signature outside the tolerance.",
        answer: old,
      });
    }

    if (!validOk) {
      skipRest(["duplicate"], inconclusive);
    } else {
      const again = await send(baselineBody, { "mappa-signature": await sign(baselineBody) });
      if (is2xx(again)) {
        add({
          id: "duplicate",
          status: "pass",
          summary: `It answers a duplicate delivery with 2xx (${seen(again)})`,
          answer: again,
        });
      } else {
        const status = again.status;
        add({
          id: "duplicate",
          status: "fail",
          summary:
            status !== undefined && status >= 500
              ? `It fails on a duplicate delivery (${status}): Mappa retries it, then gives up and reports the event as failed`
              : `It answers a duplicate delivery with ${status ?? "no answer"}, not 2xx: Mappa retries it, then gives up`,
          detail: `the same ${eventType} body again, freshly signed → ${seen(again)}`,
          fix: "Recognise an event you already handled by its id and answer 200 without running it again (the @mappa-webhooks idempotency store does this).",
          answer: again,
        });
      }
    }
  }

  const timedOut = answers.filter((answer) => answer.code === "TIMEOUT");
  const slowest = answers.reduce((max, answer) => Math.max(max, answer.latencyMs), 0);
  if (timedOut.length > 0 || slowest > slowMs) {
    add({
      id: "speed",
      status: "fail",
      summary:
        timedOut.length > 0
          ? `It does not answer in time: ${timedOut.length} request${timedOut.length === 1 ? "" : "s"} got no answer within ${formatDuration(target.timeoutMs)}`
          : `It answers slowly: the slowest answer took ${formatDuration(slowest)} (limit ${formatDuration(slowMs)}), so Mappa may time out and retry`,
      detail: `answers: ${answers.map((answer) => formatDuration(answer.latencyMs)).join(", ")}`,
      fix: "Answer as soon as the delivery is verified and stored; do slow work afterwards (a queue, or ack-first).",
    });
  } else {
    add({
      id: "speed",
      status: "pass",
      summary: `It answers quickly: the slowest answer took ${formatDuration(slowest)} (limit ${formatDuration(slowMs)})`,
    });
  }
  return checks;
}

export async function doctor(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("doctor", argv, OPTIONS, 1);
  if (values.help) {
    process.stdout.write(`${DOCTOR_HELP}\n`);
    return EXIT_OK;
  }
  const url = readUrl(positionals[0]);
  const given = values.secret ?? [];
  if (given.some((secret) => secret === "")) throw new UsageError("--secret is empty", "doctor");
  const fromEnv = process.env.MAPPA_WEBHOOK_SECRET;
  const secret = given[0] ?? (fromEnv === undefined || fromEnv === "" ? undefined : fromEnv);
  const eventType = values.event ?? DOCTOR_EVENT_TYPE;
  if (!/^[\w-]+(\.[\w-]+)+$/.test(eventType)) {
    throw new UsageError(
      `--event must look like an event type (e.g. report.completed), got "${eventType}"`,
      "doctor",
    );
  }
  const known = (MAPPA_EVENT_TYPES as readonly string[]).includes(eventType);
  const slowMs = readNumber("doctor", "slow", values.slow, { min: 1 }) ?? 3_000;
  const timeoutMs = readNumber("doctor", "timeout", values.timeout, { min: 1 }) ?? 30_000;
  const target = targetOf(url, timeoutMs);
  readResolve(values.resolve, target);
  const ca = await readCa(values.ca);
  if (ca !== undefined) target.ca = ca;

  const json = values.json === true;
  const out = json ? process.stderr : process.stdout;
  const style = createStyle(colorEnabled(out));
  const requests = secret === undefined ? 1 : 5;
  const eventNote = known
    ? `a test ${eventType} event: your handlers for ${eventType} WILL run (with made-up job ids)`
    : `an event of type ${eventType}, which no typed handler handles (receivers built on @mappa-webhooks answer 200 and run nothing)`;
  out.write(
    `${style.bold(`Checking ${url.href}`)}\n${style.dim(
      `Sends ${requests === 1 ? "1 POST request" : `at most ${requests} POST requests, each`} with ${eventNote}.${known ? "" : " Pass --event <type> to send another type."}`,
    )}\n`,
  );

  const marks: Record<Status, string> = {
    pass: style.green("✓"),
    fail: style.red("✗"),
    warn: style.yellow("!"),
    skip: style.dim("–"),
  };
  const checks = await runChecks(
    { target, secret, eventType, known, slowMs },
    json
      ? () => {}
      : (check) => {
          const summary = check.status === "skip" ? style.dim(check.summary) : check.summary;
          const lines = [`  ${marks[check.status]} ${summary}`];
          if (check.status === "fail" || check.status === "warn") {
            if (check.detail !== undefined) lines.push(`      ${style.dim(check.detail)}`);
            if (check.fix !== undefined) lines.push(`      ${style.yellow(`fix: ${check.fix}`)}`);
          }
          process.stdout.write(`${lines.join("\n")}\n`);
        },
  );
  const problems = checks.filter((check) => check.status === "fail").length;
  const warnings = checks.filter((check) => check.status === "warn").length;
  const skipped = checks.filter((check) => check.status === "skip").length;
  if (json) {
    process.stdout.write(
      `${JSON.stringify(
        { url: url.href, eventType, ok: problems === 0, problems, warnings, skipped, checks },
        null,
        2,
      )}\n`,
    );
  } else {
    const tail = [
      warnings === 0 ? "" : `${warnings} warning${warnings === 1 ? "" : "s"}`,
      skipped === 0 ? "" : `${skipped} not checked`,
    ]
      .filter((part) => part !== "")
      .join(", ");
    process.stdout.write(
      problems === 0
        ? `${style.green("✓ no problems found")}${tail === "" ? "" : style.dim(` (${tail})`)}\n`
        : `${style.red(`✗ ${problems} problem${problems === 1 ? "" : "s"} found`)}${tail === "" ? "" : style.dim(` (${tail})`)}\n`,
    );
  }
  return problems === 0 ? EXIT_OK : EXIT_FAILED;
}
