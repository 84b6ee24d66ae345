import {
  type MappaEmulatorOptions,
  startMappaEmulator,
  type WebhookAttempt,
  type WebhookDelivery,
  type WebhookShape,
} from "@mappa-webhooks/emulator";
import { EXIT_OK, parseCommandArgs, readNumber, UsageError } from "../args.js";
import { colorEnabled, createStyle } from "../output.js";

export const EMULATOR_HELP = `Run a local Mappa: the REST API, the job lifecycle, the SSE stream and signed webhooks, offline.

Usage
  mappa-webhooks emulator [options]

Options
  --port <n>           Port to listen on (default 4010; 0 picks a free one)
  --host <host>        Interface to bind (default 127.0.0.1)
  --secret <secret>    Webhook signing secret (default: $MAPPA_WEBHOOK_SECRET, else whsec_emulator)
  --api-key <key>      Accept only this Mappa-Api-Key (default: any key)
  --time-scale <n>     Speed the clock up: 0.01 runs a 150 s report in 1.5 s and the 36-minute
                       retry schedule in 21 s (default 1: real time)
  --shape <shape>      Webhook wire shape (default current):
                         current         {id, type, createdAt, timestamp, data}, conduit-signature
                         guide           {id, type, createdAt, data}, mappa-signature
                         mappa-node-1.2  {type, timestamp, data}, mappa-signature
  --credits <n>        Credit balance; jobs beyond it get 402 insufficient_credits (default unlimited)
  --json               One JSON line per webhook attempt instead of the readable log
  -h, --help           Show this help

Create a job whose label is fail:<code> (e.g. fail:target_not_found) to make it fail with that
code. Deliveries, faults, resends and the clock are under http://127.0.0.1:<port>/_emulator
(see the @mappa-webhooks/emulator README). Put \`mappa-webhooks listen\` between the emulator and
your app (webhook.url = the listen URL) to see every delivery in the inspector.

Examples
  mappa-webhooks emulator --secret whsec_test --time-scale 0.01
  mappa-webhooks emulator --port 0 --api-key test_key --shape guide`;

const OPTIONS = {
  port: { type: "string" },
  host: { type: "string" },
  secret: { type: "string" },
  "api-key": { type: "string" },
  "time-scale": { type: "string" },
  shape: { type: "string" },
  credits: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const SHAPES: readonly WebhookShape[] = ["current", "guide", "mappa-node-1.2"];

export async function emulator(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs("emulator", argv, OPTIONS, 0);
  if (values.help) {
    process.stdout.write(`${EMULATOR_HELP}\n`);
    return EXIT_OK;
  }
  const port =
    readNumber("emulator", "port", values.port, { min: 0, max: 65_535, integer: true }) ?? 4010;
  const timeScale = readNumber("emulator", "time-scale", values["time-scale"], { min: 1e-6 });
  const credits = readNumber("emulator", "credits", values.credits, { min: 0 });
  const shape = values.shape ?? "current";
  if (!SHAPES.includes(shape as WebhookShape)) {
    throw new UsageError(`--shape must be one of ${SHAPES.join(", ")}, got "${shape}"`, "emulator");
  }
  if (values.secret === "") throw new UsageError("--secret is empty", "emulator");
  if (values["api-key"] === "") throw new UsageError("--api-key is empty", "emulator");
  const secret = values.secret ?? (process.env.MAPPA_WEBHOOK_SECRET || "whsec_emulator");
  const style = createStyle(colorEnabled(process.stdout));
  const json = values.json === true;

  const log = (delivery: WebhookDelivery, attempt: WebhookAttempt): void => {
    if (json) {
      const { body: _body, ...rest } = delivery;
      process.stdout.write(`${JSON.stringify({ ...rest, attempts: undefined, attempt })}\n`);
      return;
    }
    const outcome =
      attempt.status !== undefined
        ? `${attempt.ok ? style.green(String(attempt.status)) : style.red(String(attempt.status))} in ${Math.round(attempt.latencyMs)} ms`
        : style.red(attempt.errorCode ?? "failed");
    const fault = attempt.fault === undefined ? "" : style.yellow(` [${attempt.fault}]`);
    const next =
      delivery.nextAttemptAt === null ? "" : style.dim(` next attempt ${delivery.nextAttemptAt}`);
    process.stdout.write(
      `${delivery.type} ${delivery.eventId} job ${delivery.jobId} → ${delivery.url} attempt ${attempt.attempt} (${attempt.kind}): ${outcome}${fault} ${style.dim(delivery.state)}${next}\n`,
    );
  };

  const options: MappaEmulatorOptions = {
    port,
    host: values.host ?? "127.0.0.1",
    secret,
    shape: shape as WebhookShape,
    onWebhookAttempt: log,
  };
  if (values["api-key"] !== undefined) options.apiKey = values["api-key"];
  if (timeScale !== undefined) options.timeScale = timeScale;
  if (credits !== undefined) options.credits = credits;
  let running: Awaited<ReturnType<typeof startMappaEmulator>>;
  try {
    running = await startMappaEmulator(options);
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error), "emulator");
  }
  // The first line is exactly this, so scripts and tests can read the URL.
  process.stdout.write(`emulator on ${running.url}\n`);
  const host = options.host ?? "127.0.0.1";
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1") {
    process.stderr.write(
      `${style.yellow("warning:")} the emulator is reachable from other machines on ${host}: its control API (/_emulator) needs no key\n`,
    );
  }
  if (!json) {
    process.stdout.write(
      [
        `  SDK baseUrl        ${running.url}   (new Conduit({ apiKey, baseUrl }))`,
        `  Mappa-Api-Key      ${values["api-key"] ?? "any non-empty key"}`,
        `  webhook secret     MAPPA_WEBHOOK_SECRET=${secret}`,
        `  control API        ${running.url}/_emulator   (clock, deliveries, faults, resend)`,
        `  time scale         ${timeScale ?? 1}${(timeScale ?? 1) === 1 ? " (real time: ~150 s per report)" : ""}`,
        style.dim("Press Ctrl+C to stop."),
        "",
      ].join("\n"),
    );
  }
  await new Promise<void>((resolve) => {
    const stop = () => {
      running.close().then(resolve, resolve);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  return EXIT_OK;
}
