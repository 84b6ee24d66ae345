import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { rootCertificates } from "node:tls";
import { MAPPA_EVENT_TYPES, signPayload } from "@mappa-webhooks/core";
import { createTestEvent } from "@mappa-webhooks/testing";
import { fixFor, readAnswerBody } from "../answers.js";
import {
  EXIT_FAILED,
  EXIT_OK,
  parseCommandArgs,
  RUN,
  readHttpUrl,
  readNumber,
  UsageError,
} from "../args.js";
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
import { colorEnabled, createStyle, formatDuration, jsonText, safe } from "../output.js";

export const DOCTOR_HELP = `Check a deployed webhook endpoint before Mappa delivers to it.

Usage
  ${RUN} doctor <url> [options]

Options
  --secret <secret>          The endpoint's signing secret (default: $MAPPA_WEBHOOK_SECRET);
                             without it only the unsigned request is sent, the four signed
                             checks are listed as not checked and doctor exits 1
  --event <type>             Event type to send (default doctor.probe, which typed handlers ignore)
  --ca <file>                Also trust this CA certificate (PEM), for a private CA
  --resolve <host:port:addr> Connect to addr for host:port instead of asking DNS (like curl),
                             e.g. to check a server before DNS points at it
  --slow <ms>                An answer slower than this is a problem (default 3000)
  --timeout <ms>             Give up on one request when its whole answer has not arrived
                             after this long (default 30000)
  --json                     Print the checklist as JSON
  -h, --help                 Show this help

Checks, in order: the host resolves, accepts connections and (for https://) shows a valid
certificate for its name; the URL is https:// (plain http:// on this machine is only a warning);
a POST without a signature is rejected; a correctly signed delivery is accepted, and so is one
with unusual but valid JSON formatting (else the endpoint verifies a re-serialised body); a
signature an hour old is rejected (replays); a duplicate is answered 2xx; every answer is quick.

It says what it will send before sending: at most 5 POST requests, each with an event of type
doctor.probe unless --event says otherwise; receivers built on @mappa-webhooks answer 200 to a
type they do not know and run no typed handler. An answer that names a known set-up mistake
(body_already_parsed: a JSON body parser ran before the webhook route) comes with its fix.
Exit status: 0 every check passed, 1 a problem was found (an unreachable endpoint included) or
checks were left out for want of the secret, 2 bad flags.

Example
  ${RUN} doctor https://api.example.com/webhooks/mappa --secret whsec_…`;

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
      `which endpoint? e.g. ${RUN} doctor https://api.example.com/webhooks/mappa`,
      "doctor",
    );
  }
  return readHttpUrl("doctor", "the URL", value, "https://api.example.com/webhooks/mappa");
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

/** `401 missing_signature in 48 ms`: what came back, safe to print. */
function seen(answer: ProbeAnswer): string {
  if (answer.status === undefined) return safe(`no answer: ${answer.error ?? "network error"}`);
  const { error } = readAnswerBody(answer.body);
  const code = error === undefined ? "" : ` ${error}`;
  const location = answer.location === undefined ? "" : ` → ${answer.location}`;
  return safe(`${answer.status}${code}${location} in ${formatDuration(answer.latencyMs)}`);
}

/** The fix an error answer names: the endpoint's own `fix`, or body_already_parsed's. */
function answerFix(answer: ProbeAnswer): string | undefined {
  if (answer.status === undefined || answer.status < 300) return undefined;
  const fix = fixFor(readAnswerBody(answer.body));
  return fix === undefined ? undefined : safe(fix);
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
      summary: `No answer to ${what}: ${safe(answer.error ?? "network error")}`,
      fix: "Make sure the endpoint answers within the timeout; do slow work after answering.",
    };
  }
  if (status >= 300 && status < 400) {
    return {
      summary: `It redirects ${what} (${status}): Mappa does not follow redirects`,
      fix: `Give Mappa the final URL${answer.location === undefined ? "" : ` (${safe(answer.location)})`}.`,
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
    const { error } = readAnswerBody(answer.body);
    const named = answerFix(answer);
    if (named !== undefined) {
      return {
        summary: `It fails on ${what} (${status}${error === undefined ? "" : ` ${safe(error)}`}): Mappa retries, then gives up on the event`,
        fix: named.charAt(0).toUpperCase() + named.slice(1),
      };
    }
    return {
      summary: `It fails on ${what} (${status}${error === undefined ? "" : ` ${safe(error)}`}): Mappa retries, then gives up on the event`,
      fix:
        error === "handler_failed" || error === "handler_timeout"
          ? "A handler threw or never settled: look at the app's logs for this request."
          : "Look at the app's logs for this request.",
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

const HTTP_CHECKS: DoctorCheck["id"][] = [
  "unsigned",
  "valid",
  "formatting",
  "replay",
  "duplicate",
  "speed",
];

/** The checks that need the secret: without it they are listed as not checked. */
export const SIGNED_CHECKS: DoctorCheck["id"][] = ["valid", "formatting", "replay", "duplicate"];

/** What every step shares: the plan, the list so far, and the requests sent. */
interface Run extends Plan {
  add(check: DoctorCheck): void;
  skip(ids: DoctorCheck["id"][], why: string): void;
  /** POSTs a body to the endpoint (through the resolved address); every answer is kept. */
  send(body: string, headers: Record<string, string>): Promise<ProbeAnswer>;
  answers: ProbeAnswer[];
  makeEvent(): unknown;
}

/** Step 1: the URL's scheme. */
function checkScheme(run: Run): void {
  const { url } = run.target;
  if (url.protocol === "https:") {
    run.add({ id: "https", status: "pass", summary: "The URL uses HTTPS, as Mappa requires" });
  } else if (isLoopbackName(run.target.hostname)) {
    run.add({
      id: "https",
      status: "warn",
      summary:
        "The URL uses plain http:// on this machine: fine for local testing, but Mappa delivers only to https:// URLs it can reach",
      fix: "Expose it through an HTTPS tunnel (or deploy it) and run doctor against that URL before going live.",
    });
  } else {
    run.add({
      id: "https",
      status: "fail",
      summary: "The URL uses plain http://: Mappa delivers only to https:// URLs",
      fix: "Serve the endpoint over HTTPS and give Mappa the https:// URL.",
    });
  }
}

/** Step 2: DNS, TCP and (for https://) TLS. Resolves with the address to send to, if trusted. */
async function checkConnection(run: Run): Promise<string | undefined> {
  const { target } = run;
  const resolved = await resolveTarget(target);
  if (!resolved.ok) {
    run.add({
      id: "dns",
      status: "fail",
      summary: `The host name ${target.hostname} does not resolve: ${resolved.reason}`,
      fix: "Check the URL's host name and its DNS record.",
    });
    run.skip(["tcp", "tls", ...HTTP_CHECKS], "the host could not be found");
    return undefined;
  }
  run.add({
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
    run.add({
      id: "tcp",
      status: "fail",
      summary: `Nothing answers at ${resolved.address} port ${target.port}: ${tcp.reason}`,
      fix: "Check that the server is running, listens on that port, and that a firewall lets Mappa in.",
    });
    run.skip(["tls", ...HTTP_CHECKS], "the endpoint is unreachable");
    return undefined;
  }
  run.add({
    id: "tcp",
    status: "pass",
    summary: `The server accepts connections on port ${target.port} (${formatDuration(tcp.latencyMs)})`,
  });
  if (target.url.protocol !== "https:") {
    tcp.socket.destroy();
    run.skip(["tls"], "the URL is plain http://");
    return resolved.address;
  }
  const tls = await checkTls(target, tcp.socket);
  if (!tls.ok) {
    run.add({
      id: "tls",
      status: "fail",
      summary: `The HTTPS certificate is not valid: ${tls.reason}`,
      detail: `TLS check: ${tls.code}`,
      fix: tls.fix,
    });
    tcp.socket.destroy();
    run.skip(HTTP_CHECKS, "the TLS connection is not trusted (nothing was sent)");
    return undefined;
  }
  const soon = tls.daysLeft < 14;
  run.add({
    id: "tls",
    status: soon ? "warn" : "pass",
    summary: soon
      ? `The certificate expires soon: in ${tls.daysLeft} day${tls.daysLeft === 1 ? "" : "s"} (${tls.validTo.toISOString().slice(0, 10)})`
      : `The certificate is valid for ${target.hostname} (issued by ${safe(tls.issuer)}, expires in ${tls.daysLeft} days, ${tls.protocol})`,
    ...(soon ? { fix: "Renew it (and automate renewal)." } : {}),
  });
  return resolved.address;
}

/** Step 3: a POST without a signature must be refused. */
async function checkUnsigned(run: Run): Promise<void> {
  const unsigned = await run.send(JSON.stringify(run.makeEvent()), {});
  const base = { id: "unsigned" as const, answer: unsigned };
  if (is2xx(unsigned)) {
    run.add({
      ...base,
      status: "fail",
      summary: `It accepts a delivery without a signature (${unsigned.status}): anyone who knows the URL can send fake events`,
      detail: `POST without mappa-signature → ${seen(unsigned)}`,
      fix: "Verify the mappa-signature header on the raw body before acting on a delivery (every @mappa-webhooks adapter does), and answer 401 when it is missing or wrong.",
    });
  } else if (unsigned.status === undefined) {
    run.add({
      ...base,
      status: "fail",
      summary: `No answer to a POST: ${safe(unsigned.error ?? "network error")}`,
      fix: "Check the server answers HTTP requests on this URL.",
    });
  } else if (unsigned.status >= 300 && unsigned.status < 400) {
    run.add({
      ...base,
      status: "fail",
      summary: `It redirects (${unsigned.status}): Mappa does not follow redirects`,
      detail: `POST → ${seen(unsigned)}`,
      fix: `Give Mappa the final URL${unsigned.location === undefined ? "" : ` (${safe(unsigned.location)})`}.`,
    });
  } else if (unsigned.status === 404 || unsigned.status === 405) {
    run.add({
      ...base,
      status: "fail",
      summary: `There is no webhook route for POST at this URL (${unsigned.status})`,
      detail: `POST → ${seen(unsigned)}`,
      fix: "Check the path (e.g. /webhooks/mappa) and that the route accepts POST.",
    });
  } else if (unsigned.status >= 500) {
    const fix = answerFix(unsigned);
    run.add({
      ...base,
      status: fix === undefined ? "warn" : "fail",
      summary:
        fix === undefined
          ? `It rejects a delivery without a signature, but with a server error (${unsigned.status}) instead of 401`
          : `It cannot read the raw body (${seen(unsigned)}): every delivery fails`,
      detail: `POST without mappa-signature → ${seen(unsigned)}`,
      fix:
        fix ??
        "Answer 401 for a missing or wrong signature; a 5xx makes it look like your server failed.",
    });
  } else {
    run.add({
      ...base,
      status: "pass",
      summary: `It rejects a delivery without a signature (${seen(unsigned)})`,
    });
  }
}

const INCONCLUSIVE = "a correctly signed delivery was not accepted either (see above)";

/** Steps 4 to 7, with the secret: signed, unusually formatted, an hour old, a duplicate. */
async function checkSigned(run: Run, secret: string): Promise<void> {
  const { eventType, known } = run;
  const sign = (body: string, timestamp?: number) =>
    signPayload({ payload: body, secret, ...(timestamp === undefined ? {} : { timestamp }) });

  const baselineBody = JSON.stringify(run.makeEvent());
  const valid = await run.send(baselineBody, { "mappa-signature": await sign(baselineBody) });
  const validOk = is2xx(valid);
  if (validOk) {
    run.add({
      id: "valid",
      status: "pass",
      summary: `It accepts a correctly signed delivery (${seen(valid)})`,
      answer: valid,
    });
  } else {
    run.add({
      id: "valid",
      status: "fail",
      ...notAccepted(valid, "a correctly signed delivery", eventType, known),
      detail: `signed ${eventType} → ${seen(valid)}`,
      answer: valid,
    });
  }

  const formattedBody = unusualJson(run.makeEvent());
  const formatted = await run.send(formattedBody, {
    "mappa-signature": await sign(formattedBody),
  });
  if (!validOk) {
    run.add({
      id: "formatting",
      status: "skip",
      summary: `${TITLES.formatting}: not conclusive, ${INCONCLUSIVE}`,
      answer: formatted,
    });
  } else if (is2xx(formatted)) {
    run.add({
      id: "formatting",
      status: "pass",
      summary: `It accepts a signed body with unusual but valid JSON formatting (${seen(formatted)}): it verifies the bytes it received`,
      answer: formatted,
    });
  } else if (formatted.status === 401 || formatted.status === 403) {
    run.add({
      id: "formatting",
      status: "fail",
      summary: `It rejects a correctly signed body whose JSON is formatted unusually (${formatted.status}): it verifies a re-serialised body, not the bytes it received`,
      detail:
        "Compact JSON passed, the same kind of event with spaces, another key order and \\u escapes did not: the app parses the JSON and verifies JSON.stringify(body). Any delivery whose bytes differ from that gets rejected.",
      fix: "Verify the raw request body before any JSON parser runs (express.raw, Fastify's rawBody, request.text() in Next/Hono); the @mappa-webhooks adapters do this for you.",
      answer: formatted,
    });
  } else {
    run.add({
      id: "formatting",
      status: "fail",
      ...notAccepted(formatted, "a signed body with unusual JSON formatting", eventType, known),
      detail: `signed, unusually formatted ${eventType} → ${seen(formatted)}`,
      answer: formatted,
    });
  }

  const oldBody = JSON.stringify(run.makeEvent());
  const old = await run.send(oldBody, {
    "mappa-signature": await sign(oldBody, Math.floor(Date.now() / 1000) - 3_600),
  });
  if (is2xx(old)) {
    run.add({
      id: "replay",
      status: "fail",
      summary: `It accepts a signature from an hour ago (${old.status}): a captured delivery can be replayed`,
      detail: `signed with t = now − 3600 s → ${seen(old)}`,
      fix: "Reject signatures whose timestamp is more than 300 s from now (every @mappa-webhooks receiver does).",
      answer: old,
    });
  } else if (!validOk) {
    run.add({
      id: "replay",
      status: "skip",
      summary: `${TITLES.replay}: not conclusive, ${INCONCLUSIVE}`,
      answer: old,
    });
  } else if (old.status !== undefined && old.status >= 400 && old.status < 500) {
    run.add({
      id: "replay",
      status: "pass",
      summary: `It rejects a signature from an hour ago (${seen(old)})`,
      answer: old,
    });
  } else {
    run.add({
      id: "replay",
      status: "warn",
      summary: `It rejects a signature from an hour ago, but with ${old.status ?? "no answer"} instead of 401`,
      detail: `signed with t = now − 3600 s → ${seen(old)}`,
      fix: "Answer 401 for a signature outside the tolerance.",
      answer: old,
    });
  }

  if (!validOk) {
    run.skip(["duplicate"], INCONCLUSIVE);
    return;
  }
  const again = await run.send(baselineBody, { "mappa-signature": await sign(baselineBody) });
  if (is2xx(again)) {
    run.add({
      id: "duplicate",
      status: "pass",
      summary: `It answers a duplicate delivery with 2xx (${seen(again)})`,
      answer: again,
    });
    return;
  }
  const status = again.status;
  run.add({
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

/** Step 8: every answer came, and quickly. */
function checkSpeed(run: Run): void {
  const { answers, slowMs, target } = run;
  const timedOut = answers.filter((answer) => answer.code === "TIMEOUT");
  const slowest = answers.reduce((max, answer) => Math.max(max, answer.latencyMs), 0);
  if (timedOut.length > 0 || slowest > slowMs) {
    run.add({
      id: "speed",
      status: "fail",
      summary:
        timedOut.length > 0
          ? `It does not answer in time: ${timedOut.length} request${timedOut.length === 1 ? "" : "s"} got no complete answer within ${formatDuration(target.timeoutMs)}`
          : `It answers slowly: the slowest answer took ${formatDuration(slowest)} (limit ${formatDuration(slowMs)}), so Mappa may time out and retry`,
      detail: `answers: ${answers.map((answer) => formatDuration(answer.latencyMs)).join(", ")}`,
      fix: "Answer as soon as the delivery is verified and stored; do slow work afterwards (a queue, or ack-first).",
    });
    return;
  }
  run.add({
    id: "speed",
    status: "pass",
    summary: `It answers quickly: the slowest answer took ${formatDuration(slowest)} (limit ${formatDuration(slowMs)})`,
  });
}

/** The checklist, step by step; a step that cannot go on marks the rest as not checked. */
async function runChecks(
  plan: Plan,
  onCheck: (check: DoctorCheck) => void,
): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  let address = "";
  const run: Run = {
    ...plan,
    answers: [],
    add(check) {
      checks.push(check);
      onCheck(check);
    },
    skip(ids, why) {
      for (const id of ids)
        run.add({ id, status: "skip", summary: `${TITLES[id]}: not checked, ${why}` });
    },
    async send(body, headers) {
      const answer = await post(plan.target, address, body, {
        "user-agent": "mappa-webhooks-doctor",
        ...headers,
      });
      run.answers.push(answer);
      return answer;
    },
    makeEvent: () => createTestEvent(plan.eventType),
  };

  checkScheme(run);
  const reached = await checkConnection(run);
  if (reached === undefined) return checks;
  address = reached;
  await checkUnsigned(run);
  if (plan.secret === undefined) {
    run.skip(SIGNED_CHECKS, "it needs the secret: pass --secret (or set MAPPA_WEBHOOK_SECRET)");
  } else {
    await checkSigned(run, plan.secret);
  }
  checkSpeed(run);
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
  // Without the secret the signed checks never ran: not "no problems", but not checked.
  const needSecret =
    secret === undefined
      ? checks.filter(
          (check) => check.status === "skip" && SIGNED_CHECKS.includes(check.id) && problems === 0,
        )
      : [];
  const complete = needSecret.length === 0;
  if (json) {
    process.stdout.write(
      `${jsonText(
        {
          url: url.href,
          eventType,
          ok: problems === 0 && complete,
          problems,
          warnings,
          skipped,
          ...(complete ? {} : { needsSecret: needSecret.map((check) => check.id) }),
          checks,
        },
        2,
      )}\n`,
    );
  } else if (!complete) {
    process.stdout.write(
      `${style.red(
        `✗ not fully checked: ${needSecret.length} check${needSecret.length === 1 ? "" : "s"} need${needSecret.length === 1 ? "s" : ""} the secret (${needSecret.map((check) => TITLES[check.id]).join(", ")})`,
      )}\n  ${style.yellow(`Run again with --secret <the endpoint's signing secret> (or set MAPPA_WEBHOOK_SECRET); no problem found in the ${checks.length - skipped} checks that ran.`)}\n`,
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
  return problems === 0 && complete ? EXIT_OK : EXIT_FAILED;
}
