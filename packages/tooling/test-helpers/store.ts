// What the stores' tests (MySQL, SQLite, DynamoDB, ...) share: the receiver processes they
// start from test/fixtures, signed single deliveries, the core's idempotency key of an event,
// a receiver in the test process over real HTTP, and the kill -9 set-up of the crash tests.
// Nothing here imports a workspace package: what is the package's (signing, parsing, the
// receiver) is passed in, so every store's test helpers stay a few lines of their own.
import { existsSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type RequestListener } from "node:http";
import { listenOnLoopback } from "./net.js";
import { type Child, startProcess } from "./process.js";

/** Where a store's test receivers listen: the path of every framework adapter's default. */
export const WEBHOOK_PATH = "/webhooks/mappa";

/**
 * Resolves the webhook URL a child printed as `listening on http://127.0.0.1:<port>`.
 *
 * @example
 * ```ts
 * const url = await webhookUrlOf(startFixture("receiver.mjs", env));
 * ```
 */
export async function webhookUrlOf(child: Child, timeoutMs = 30_000): Promise<string> {
  const [, base] = await child.waitForLine(/listening on (http:\/\/127\.0\.0\.1:\d+)/, timeoutMs);
  return `${base}${WEBHOOK_PATH}`;
}

/** How a store's tests start their fixture processes (see {@link fixtureStarter}). */
export interface FixtureStarterOptions {
  /** The folder holding `fixtures/`: `new URL(".", import.meta.url)` in the test helpers. */
  testDir: URL;
  /** Files (relative to `testDir`) the fixtures import and that must be built first. */
  built: readonly string[];
  /** The command that builds them, shown when one is missing. */
  buildHint: string;
  /** Added to every fixture's environment, before the call's own `env`. */
  env?: Record<string, string>;
}

/** Starts `<runtime> <testDir>/fixtures/<script> ...args` with `env` added to this process's. */
export type StartFixture = (
  script: string,
  env: Record<string, string>,
  options?: { runtime?: string; args?: string[] },
) => Child;

/**
 * The `startFixture` of a store's tests: checks the build is there, then starts the script
 * (on this Node unless `runtime` names another program) with the harness of `startProcess`.
 *
 * @example
 * ```ts
 * const startFixture = fixtureStarter({
 *   testDir: new URL(".", import.meta.url),
 *   built: ["../dist/index.js"],
 *   buildHint: "pnpm --filter @mappa-webhooks/dynamodb run build",
 * });
 * ```
 */
export function fixtureStarter(options: FixtureStarterOptions): StartFixture {
  return (script, env, { runtime, args = [] } = {}) => {
    for (const built of options.built) {
      if (!existsSync(new URL(built, options.testDir))) {
        throw new Error(`${built} is missing: build first (${options.buildHint}).`);
      }
    }
    const path = new URL(`fixtures/${script}`, options.testDir).pathname;
    return startProcess({
      ...(runtime === undefined ? {} : { command: runtime }),
      args: [path, ...args],
      env: { ...process.env, ...options.env, ...env },
      label: script,
    });
  };
}

/** Signs a payload (`signPayload` of @mappa-webhooks/testing). */
export type SignPayload = (input: { payload: string; secret: string }) => Promise<string>;

/** One signed POST and its answer. */
export type SignedDeliver = (
  url: string,
  event: unknown,
) => Promise<{ status: number; body: Record<string, unknown> }>;

/**
 * A `deliver(url, event)` that POSTs `event` once, signed with `secret`, and resolves the
 * status and the parsed JSON body (no retries: Mappa's schedule is the delivery simulator's).
 *
 * @example
 * ```ts
 * const deliver = signedDeliver(SECRET, signPayload);
 * expect(await deliver(url, event)).toEqual({ status: 200, body: { received: true } });
 * ```
 */
export function signedDeliver(secret: string, sign: SignPayload): SignedDeliver {
  return async (url, event) => {
    const payload = JSON.stringify(event);
    const signature = await sign({ payload, secret });
    const response = await fetch(url, {
      method: "POST",
      body: payload,
      headers: { "content-type": "application/json", "mappa-signature": signature },
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
}

/**
 * The `keyOf(event)` of a store's tests: the idempotency key the core derives for `event`
 * (what the stores and the fixtures key by), from the core's `parseEvent`.
 *
 * @example
 * ```ts
 * const keyOf = idempotencyKeyOf(parseEvent);
 * ```
 */
export function idempotencyKeyOf(
  parse: (body: string) => { idempotencyKey?: string | undefined },
): (event: unknown) => string {
  return (event) => {
    const key = parse(JSON.stringify(event)).idempotencyKey;
    if (key === undefined) throw new Error("test event without an idempotency key");
    return key;
  };
}

/** The test kit of one store: {@link fixtureStarter}, {@link signedDeliver}, {@link idempotencyKeyOf}. */
export interface StoreTestKitOptions extends FixtureStarterOptions {
  secret: string;
  sign: SignPayload;
  parseEvent: (body: string) => { idempotencyKey?: string | undefined };
}

/**
 * Everything a store's `test/helpers.ts` used to write again: `startFixture`, `webhookUrlOf`,
 * `deliver` (signed with the store's secret) and `keyOf`.
 *
 * @example
 * ```ts
 * export const { startFixture, webhookUrlOf, deliver, keyOf } = storeTestKit({
 *   testDir: new URL(".", import.meta.url), built: ["../dist/index.js"], buildHint: "...",
 *   secret: SECRET, sign: signPayload, parseEvent,
 * });
 * ```
 */
export function storeTestKit(options: StoreTestKitOptions): {
  startFixture: StartFixture;
  webhookUrlOf: typeof webhookUrlOf;
  deliver: SignedDeliver;
  keyOf: (event: unknown) => string;
} {
  return {
    startFixture: fixtureStarter(options),
    webhookUrlOf,
    deliver: signedDeliver(options.secret, options.sign),
    keyOf: idempotencyKeyOf(options.parseEvent),
  };
}

/** A receiver in the test process, over real HTTP on loopback. */
export interface RunningReceiver {
  /** Its webhook URL (`http://127.0.0.1:<port>/webhooks/mappa`). */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `listener` (an Express app, or {@link coreListener}) on 127.0.0.1 with an ephemeral
 * port; `close` drops open connections first.
 *
 * @example
 * ```ts
 * const receiver = await serveReceiver(express().use(mappaWebhook(options)));
 * ```
 */
export async function serveReceiver(listener: RequestListener): Promise<RunningReceiver> {
  const { baseUrl, close } = await listenOnLoopback(createServer(listener));
  return { url: `${baseUrl}${WEBHOOK_PATH}`, close };
}

/** The core's receiver as `createMappaWebhooks` returns it (only what is served here). */
export interface CoreWebhooks {
  handle(input: {
    method: string;
    headers: IncomingHttpHeaders;
    rawBody: Uint8Array;
  }): Promise<{ status: number; headers: Record<string, string>; body: string }>;
}

/**
 * The core's receiver behind node:http without a framework: the raw body in, its answer out.
 *
 * @example
 * ```ts
 * const receiver = await serveReceiver(coreListener(createMappaWebhooks(options)));
 * ```
 */
export function coreListener(webhooks: CoreWebhooks): RequestListener {
  return async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const response = await webhooks.handle({
      method: req.method ?? "GET",
      headers: req.headers,
      rawBody: Buffer.concat(chunks),
    });
    res.writeHead(response.status, response.headers).end(response.body);
  };
}

/** The kill -9 of a crash test (see {@link crashAfterEffect}). */
export interface CrashAfterEffectOptions<TEvent extends { data?: object }, TReport> {
  /** Starts receiver process `instance` ("doomed", then "rescuer") of the test's store. */
  start(instance: "doomed" | "rescuer"): Child;
  /** The event; it is sent with `data.stallOn: "doomed"` (write the effect, print, hang). */
  event: TEvent;
  keyOf(event: unknown): string;
  deliver: SignedDeliver;
  /** Mappa's retries to the rescuer (e.g. `simulateDelivery` at 1/100 of its schedule). */
  redeliver(url: string, event: TEvent): Promise<TReport>;
  /** How long the doomed process may take to write the effect. Default 30 000 ms. */
  timeoutMs?: number;
}

/**
 * The crash tests' run: starts "doomed", delivers the event to it, SIGKILLs it right after its
 * handler wrote the effect (it printed `wrote <key>`), starts "rescuer" on the same storage and
 * lets `redeliver` reach it. Resolves what the killed delivery got (`"network error"` expected),
 * the redelivery's report, the time from the kill to its end, and the rescuer.
 *
 * @example
 * ```ts
 * const crash = await crashAfterEffect({ start, event, keyOf, deliver, redeliver });
 * expect(crash.answer).toBe("network error");
 * ```
 */
export async function crashAfterEffect<TEvent extends { data?: object }, TReport>(
  options: CrashAfterEffectOptions<TEvent, TReport>,
): Promise<{
  answer: number | "network error";
  event: TEvent;
  key: string;
  report: TReport;
  recoveryMs: number;
  rescuer: Child;
  url: string;
}> {
  const { start, deliver } = options;
  const event = { ...options.event, data: { ...options.event.data, stallOn: "doomed" } };
  const key = options.keyOf(event);
  const doomed = start("doomed");
  const answer = deliver(await webhookUrlOf(doomed), event).then(
    (result) => result.status,
    () => "network error" as const,
  );
  const escaped = key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  await doomed.waitForLine(new RegExp(`^wrote ${escaped}$`), options.timeoutMs ?? 30_000);
  const killedAt = performance.now();
  await doomed.kill("SIGKILL");
  const answered = await answer;
  const rescuer = start("rescuer");
  const url = await webhookUrlOf(rescuer);
  const report = await options.redeliver(url, event);
  const recoveryMs = Math.round(performance.now() - killedAt);
  return { answer: answered, event, key, report, recoveryMs, rescuer, url };
}
