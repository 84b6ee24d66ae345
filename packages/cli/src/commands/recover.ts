import { randomBytes } from "node:crypto";
import {
  createMappaRecovery,
  createMemoryIdempotencyStore,
  DEFAULT_MAPPA_API_URL,
  type MappaEvent,
  type MappaRecoveryReport,
  signPayload,
} from "@mappa-webhooks/core";
import {
  EXIT_FAILED,
  EXIT_OK,
  parseCommandArgs,
  RUN,
  readHttpUrl,
  readNumber,
  readSecrets,
  UsageError,
} from "../args.js";
import { colorEnabled, createStyle, jsonText, safe } from "../output.js";

export const RECOVER_HELP = `Recover job outcomes whose webhook never arrived.

Usage
  ${RUN} recover --endpoint <url> [options]
  ${RUN} recover <job-id>... --url <webhook-url> [options]

With --endpoint: call a deployed app's recovery route once and print its report.
The route is the one createRecoveryRoute (@mappa-webhooks/next), createRecoveryHandler
(@mappa-webhooks/aws-lambda) or createRecoveryEndpoint (@mappa-webhooks/core) serves: it asks
Mappa's API about the tracked jobs whose webhook never arrived and runs their outcomes through
the app's own handlers. Use this command from a system cron, a CI schedule or by hand after an
outage.

With job ids and --url: ask Mappa's API (GET /v1/jobs/:id) about each job and send each ended
job's outcome to your webhook URL as the signed event its webhook would have carried (marked
"mappaRecovered": true). No tracking is needed: take the ids from your own records after an
outage. Your receiver deduplicates by job outcome, so an outcome it already handled is answered
as a duplicate and nothing runs twice. Canceled, running and unknown jobs are reported and sent
nothing.

Options
  --endpoint <url>     The app's recovery route, e.g. https://app.example.com/api/mappa-recovery
  --token <token>      Its bearer token (default: $MAPPA_RECOVERY_TOKEN, then $CRON_SECRET)
  --url <url>          Your webhook URL, to send job outcomes to
  --secret <secret>    Signing secret for --url (default: $MAPPA_WEBHOOK_SECRET)
  --api-key <key>      Mappa API key (default: $MAPPA_API_KEY)
  --base-url <url>     Mappa's API (default ${DEFAULT_MAPPA_API_URL}; an emulator's URL in tests)
  --timeout <s>        Give up after this many seconds (default 120)
  --json               Print the report as JSON
  -h, --help           Show this help

Exit status: 0 every job went through (or had nothing to send), 1 something did not (401,
Mappa's API failed, your app answered an error, unreachable), 2 bad input.

Examples
  CRON_SECRET=… ${RUN} recover --endpoint https://app.example.com/api/mappa-recovery
  MAPPA_API_KEY=… ${RUN} recover cmj0… cmj1… --url https://app.example.com/webhooks/mappa`;

/** Most job ids one `recover` sends (one API call each). */
const MAX_JOBS = 1000;

const OPTIONS = {
  endpoint: { type: "string" },
  url: { type: "string" },
  secret: { type: "string", multiple: true },
  "api-key": { type: "string" },
  "base-url": { type: "string" },
  token: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

interface RouteReport {
  checked?: number;
  counts?: Record<string, number>;
  retryAfterMs?: number;
  apiError?: { code?: string; message?: string };
  jobs?: { jobId?: string; outcome?: string; type?: string; error?: string }[];
  error?: string;
}

/** Runs `recover`; resolves with the exit code. */
export async function recover(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("recover", argv, OPTIONS, MAX_JOBS);
  if (values.help === true) {
    process.stdout.write(`${RECOVER_HELP}\n`);
    return EXIT_OK;
  }
  if (values.endpoint !== undefined && (positionals.length > 0 || values.url !== undefined)) {
    throw new UsageError(
      "give either --endpoint (run a deployed recovery route) or job ids with --url (send their outcomes), not both",
      "recover",
    );
  }
  if (values.endpoint === undefined) {
    if (positionals.length === 0 || values.url === undefined) {
      throw new UsageError(
        positionals.length === 0
          ? "give --endpoint <recovery route>, or job ids and --url <webhook url>"
          : "--url is required: the webhook URL to send the jobs' outcomes to",
        "recover",
      );
    }
    return recoverJobs(positionals, values);
  }
  const url = readHttpUrl(
    "recover",
    "--endpoint",
    values.endpoint,
    "https://app.example.com/api/mappa-recovery",
  );
  const token =
    values.token ?? process.env.MAPPA_RECOVERY_TOKEN ?? process.env.CRON_SECRET ?? undefined;
  if (token === undefined || token === "") {
    throw new UsageError(
      "no token: pass --token <token> or set MAPPA_RECOVERY_TOKEN (or CRON_SECRET), the secret the route was created with",
      "recover",
    );
  }
  const timeoutSec = readNumber("recover", "timeout", values.timeout, { min: 1, max: 3600 }) ?? 120;
  const style = createStyle(colorEnabled(process.stdout));
  const fail = (message: string) => {
    if (values.json === true) process.stdout.write(`${jsonText({ ok: false, error: message })}\n`);
    else process.stderr.write(`${style.red("✗")} ${message}\n`);
    return EXIT_FAILED;
  };

  let status: number;
  let text: string;
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, accept: "application/json" },
      signal: AbortSignal.timeout(timeoutSec * 1000),
      redirect: "manual",
    });
    status = response.status;
    text = await response.text();
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const why =
      (error as Error).name === "TimeoutError"
        ? `no answer within ${timeoutSec} s`
        : (cause?.code ?? cause?.message ?? (error as Error).message);
    return fail(`could not reach ${url.origin}${url.pathname}: ${why}`);
  }
  let report: RouteReport | undefined;
  try {
    report = JSON.parse(text) as RouteReport;
  } catch {
    report = undefined;
  }
  if (status === 401) {
    return fail(
      "the route answered 401: the token is not the one it was created with (check --token, MAPPA_RECOVERY_TOKEN or CRON_SECRET)",
    );
  }
  if (report === undefined || typeof report !== "object" || report === null) {
    return fail(`the route answered ${status} with a body that is not a recovery report`);
  }
  if (values.json === true) {
    process.stdout.write(`${jsonText({ ok: status === 200, status, ...report })}\n`);
    return status === 200 ? EXIT_OK : EXIT_FAILED;
  }
  if (report.error !== undefined && report.counts === undefined) {
    return fail(`the route answered ${status} ${safe(String(report.error))}`);
  }
  const counts = Object.entries(report.counts ?? {})
    .filter(([, n]) => n > 0)
    .map(([outcome, n]) => `${n} ${outcome}`);
  const summary = `checked ${report.checked ?? 0} job(s)${counts.length > 0 ? `: ${counts.join(", ")}` : ""}`;
  for (const job of report.jobs ?? []) {
    if (job.outcome === "waiting" || job.outcome === "running") continue;
    const what = [job.type, job.error].filter((part) => part !== undefined).join(" ");
    process.stdout.write(
      `  ${safe(String(job.jobId))}  ${safe(String(job.outcome))}${what === "" ? "" : `  ${safe(what)}`}\n`,
    );
  }
  if (status !== 200) {
    const api = report.apiError;
    const retry =
      report.retryAfterMs === undefined
        ? ""
        : `; Mappa asked to wait ${Math.ceil(report.retryAfterMs / 1000)} s`;
    return fail(
      `${summary}; Mappa's API failed: ${safe(api?.message ?? api?.code ?? `status ${status}`)}${retry}`,
    );
  }
  process.stdout.write(`${style.green("✓")} ${summary}\n`);
  return EXIT_OK;
}

type Values = {
  url?: string | undefined;
  secret?: string[] | undefined;
  "api-key"?: string | undefined;
  "base-url"?: string | undefined;
  timeout?: string | undefined;
  json?: boolean | undefined;
};

/** The app's answer to one recovered event. */
interface Sent {
  status: number;
  duplicate: boolean;
}

/**
 * Recovers the given jobs by sending their outcomes to `--url`: the core's recovery (graceMs 0,
 * a store of its own) builds each event from the API, and the handler signs it with the app's
 * secret and posts it. The app's own store makes an outcome it already handled a duplicate.
 */
async function recoverJobs(jobIds: string[], values: Values): Promise<number> {
  const url = readHttpUrl("recover", "--url", values.url as string);
  const [secret] = readSecrets("recover", values.secret);
  const apiKey = values["api-key"] ?? process.env.MAPPA_API_KEY;
  if (apiKey === undefined || apiKey === "") {
    throw new UsageError("no API key: pass --api-key <key> or set MAPPA_API_KEY", "recover");
  }
  const baseUrl =
    values["base-url"] === undefined
      ? DEFAULT_MAPPA_API_URL
      : readHttpUrl("recover", "--base-url", values["base-url"], "https://api.mappa.ai").href;
  if (jobIds.some((id) => id.trim() === "")) {
    throw new UsageError("a job id is empty", "recover");
  }
  const timeoutSec = readNumber("recover", "timeout", values.timeout, { min: 1, max: 3600 }) ?? 120;
  const style = createStyle(colorEnabled(process.stdout));
  const sent = new Map<string, Sent>();
  const deadline = AbortSignal.timeout(timeoutSec * 1000);

  const forward = async (event: MappaEvent) => {
    const body = JSON.stringify(event.raw);
    const response = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "mappa-signature": await signPayload({ payload: body, secret: secret as string }),
      },
      body,
      signal: deadline,
      redirect: "manual",
    });
    const text = await response.text();
    let duplicate = false;
    try {
      duplicate = (JSON.parse(text) as { duplicate?: unknown }).duplicate === true;
    } catch {
      // an answer that is not JSON: the status says enough
    }
    const jobId = (event.data as { jobId: string }).jobId;
    sent.set(jobId, { status: response.status, duplicate });
    if (response.status < 200 || response.status >= 300) {
      throw new Error(
        `your app answered ${response.status}${text === "" ? "" : ` ${text.slice(0, 200)}`}`,
      );
    }
  };
  const recovery = createMappaRecovery({
    // The event only passes through this process: a throwaway key signs it on the way in.
    secret: `whsec_${randomBytes(16).toString("hex")}`,
    idempotency: createMemoryIdempotencyStore(),
    apiKey,
    baseUrl,
    graceMs: 0,
    batchSize: jobIds.length,
    logger: false,
    on: {
      "report.completed": forward,
      "report.failed": forward,
      "matching.completed": forward,
      "matching.failed": forward,
    },
  });
  for (const jobId of new Set(jobIds)) await recovery.track(jobId);
  let report: MappaRecoveryReport;
  try {
    const expired = new Promise<never>((_, reject) =>
      deadline.addEventListener("abort", () =>
        reject(new Error(`not done within ${timeoutSec} s`)),
      ),
    );
    expired.catch(() => {}); // the race may be over before the deadline
    report = await Promise.race([recovery.reconcile(), expired]);
  } catch (error) {
    const message = `recovery stopped: ${(error as Error).message}`;
    if (values.json === true) process.stdout.write(`${jsonText({ ok: false, error: message })}\n`);
    else process.stderr.write(`${style.red("✗")} ${message}\n`);
    return EXIT_FAILED;
  }

  const jobs = report.jobs.map((job) => {
    const app = sent.get(job.jobId);
    // Sent and answered as a duplicate: the app had handled it already.
    const outcome =
      job.outcome === "recovered" && app?.duplicate === true ? "duplicate" : job.outcome;
    return {
      jobId: job.jobId,
      outcome,
      ...(job.status === undefined ? {} : { status: job.status }),
      ...(job.type === undefined ? {} : { type: job.type }),
      ...(app === undefined ? {} : { appStatus: app.status }),
      ...(job.error === undefined ? {} : { error: job.error.message }),
    };
  });
  const ok = jobs.every((job) => job.outcome !== "failed" && job.outcome !== "api_error");
  if (values.json === true) {
    process.stdout.write(`${jsonText({ ok, checked: report.checked, jobs })}\n`);
    return ok ? EXIT_OK : EXIT_FAILED;
  }
  for (const job of jobs) {
    const mark =
      job.outcome === "recovered"
        ? style.green("✓")
        : job.outcome === "failed" || job.outcome === "api_error"
          ? style.red("✗")
          : style.dim("·");
    const what =
      job.outcome === "recovered"
        ? `${job.type} sent, your app answered ${job.appStatus}`
        : job.outcome === "duplicate"
          ? `${job.type} sent, your app had handled it already (duplicate)`
          : job.outcome === "failed" && job.appStatus !== undefined
            ? `${job.type} sent, your app answered ${job.appStatus}: it was not handled; run recover again once the app is fixed`
            : job.outcome === "waiting" || job.outcome === "running"
              ? `still ${job.status}: nothing to send yet`
              : (job.error ?? job.outcome);
    process.stdout.write(`${mark} ${safe(job.jobId)}  ${safe(what)}\n`);
  }
  return ok ? EXIT_OK : EXIT_FAILED;
}
