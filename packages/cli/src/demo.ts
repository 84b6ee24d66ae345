// `pnpm demo`: starts an example receiver and plays Mappa against it, step by step, printing
// what happened. Exits 0 only when every step behaved as a correct receiver must.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { idempotencyKeyFor } from "@mappa-webhooks/core";
import {
  createDeliverySimulator,
  createSignedDelivery,
  createTestEvent,
  type DeliveryAttempt,
  type DeliveryReport,
} from "@mappa-webhooks/testing";
import { describeAttempt, isDuplicateAnswer } from "./commands/trigger.js";
import { colorEnabled, createStyle, formatDuration } from "./output.js";

const HELP = `Usage: node packages/cli/dist/demo.js [--receiver express|builtin|<path to server.js>]

Starts a receiver (examples/express by default, the built-in one if it is missing) and plays a
scripted Mappa scenario against it: a completed report, a failed report, a tampered delivery, a
replayed delivery, a duplicate, and an outage that recovers through the retry schedule.

The receiver keeps handled events in an SQLite file in a temporary folder (removed at the end),
so its dedup survives the restart; MAPPA_STORE=memory runs it on the memory store instead.`;

/** A secret for this demo only; the receiver gets it through its environment. */
const DEMO_SECRET = "whsec_demo_local_only_4d1f";
/** Mappa's waits ×0.01: 5 s → 50 ms, 30 s → 300 ms, 5 min → 3 s, 30 min → 18 s. */
const TIME_SCALE = 0.01;
const LOG_WAIT_MS = 3_000;
/** How long to watch the log for a line that must NOT appear. */
const QUIET_MS = 400;
const DEMO_TIMEOUT_MS = 120_000;

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");

const style = createStyle(colorEnabled(process.stdout));
const out = (line = "") => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

interface ReceiverSpec {
  label: string;
  command: string[];
  cwd: string;
}

function chooseReceiver(choice: string | undefined): ReceiverSpec {
  const example = join(root, "examples/express/server.js");
  const builtin: ReceiverSpec = {
    label: "the built-in receiver (packages/cli/dist/demo-receiver.js, on @mappa-webhooks/core)",
    command: [process.execPath, join(here, "demo-receiver.js")],
    cwd: here,
  };
  if (choice === "builtin") return builtin;
  if (choice === undefined || choice === "express") {
    if (existsSync(example)) {
      return {
        label: "examples/express (node server.js)",
        command: [process.execPath, example],
        cwd: dirname(example),
      };
    }
    if (choice === "express") throw new Error(`${example} does not exist`);
    return { ...builtin, label: `${builtin.label}; examples/express/server.js is missing` };
  }
  const path = resolve(choice);
  if (!existsSync(path)) throw new Error(`--receiver ${choice}: no such file`);
  return {
    label: relative(root, path),
    command: [process.execPath, path],
    cwd: dirname(path),
  };
}

/** The receiver as a child process, with every stdout line it printed. */
class Receiver {
  readonly lines: string[] = [];
  /** The `store: …` line of its latest start, if it printed one (the examples do). */
  store: string | undefined;
  private stderr = "";
  private child: ChildProcess | undefined;
  private waiters: Array<() => void> = [];

  /** `sqliteFile`: the store every start of this receiver shares (SQLITE_FILE). */
  constructor(
    private readonly spec: ReceiverSpec,
    private readonly sqliteFile: string,
  ) {}

  /** Starts it on `port` (0 for any) and resolves with the port it printed. */
  async start(port: number): Promise<number> {
    const [command, ...args] = this.spec.command as [string, ...string[]];
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      MAPPA_WEBHOOK_SECRET: DEMO_SECRET,
      NO_COLOR: "1",
    };
    // The demo is self-contained: no Redis; an SQLite file of its own, kept across restarts.
    delete env.REDIS_URL;
    env.SQLITE_FILE = this.sqliteFile;
    const child = spawn(command, args, {
      cwd: this.spec.cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    // Never leave the receiver running behind the demo, whatever happens.
    const killOnExit = () => child.kill("SIGKILL");
    process.once("exit", killOnExit);
    child.once("exit", () => process.off("exit", killOnExit));
    let buffered = "";
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk;
      let newline = buffered.indexOf("\n");
      while (newline !== -1) {
        this.lines.push(buffered.slice(0, newline).trimEnd());
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf("\n");
      }
      for (const wake of this.waiters.splice(0)) wake();
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4_000);
    });
    const from = this.lines.length;
    const exited = new Promise<never>((_, reject) => {
      child.once("exit", (code, signal) =>
        reject(
          new Error(
            `the receiver exited (${signal ?? `code ${code}`}) before listening${this.stderr ? `:\n${this.stderr.trim()}` : ""}`,
          ),
        ),
      );
      child.once("error", reject);
    });
    exited.catch(() => {});
    const line = await Promise.race([
      this.waitForLine((l) => /^listening on http:\/\/127\.0\.0\.1:\d+/.test(l), 20_000, from),
      exited,
    ]);
    if (line === undefined)
      throw new Error("the receiver did not print `listening on …` within 20 s");
    this.store = this.lines.slice(from).find((l) => l.startsWith("store: "));
    return Number(/:(\d+)/.exec(line.slice("listening on http://".length))?.[1]);
  }

  /** Stops it and waits until it has exited. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }

  /** The first line from index `from` on that matches, waiting up to `timeoutMs`. */
  async waitForLine(
    match: (line: string) => boolean,
    timeoutMs: number,
    from = 0,
  ): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.slice(from).find(match);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          wake();
        });
      });
    }
  }

  handledLines(event: { id?: string; type: string; data: unknown }): string[] {
    return this.lines.filter((line) => isHandledLine(line, event));
  }
}

interface StepResult {
  title: string;
  differences: string[];
}

/**
 * What a receiver may log for `event` after `[mappa] <type> `: its id, or its idempotency key as
 * the core derives it (`~job:<type>:<jobId>` for a known type, whatever the id).
 */
function logIdsOf(event: { id?: string; type: string; data: unknown }): string[] {
  const { jobId } = event.data as { jobId?: unknown };
  const key = idempotencyKeyFor({
    id: event.id,
    type: event.type,
    jobId: typeof jobId === "string" ? jobId : undefined,
  });
  return [event.id, key].filter((id): id is string => id !== undefined && id !== "");
}

/** True when `line` is the receiver's `[mappa] <type> <id or key> …` line for `event`. */
function isHandledLine(line: string, event: { id?: string; type: string; data: unknown }) {
  const [tag, type, id] = line.split(" ");
  return tag === "[mappa]" && type === event.type && logIdsOf(event).includes(id ?? "");
}

function attemptLine(attempt: DeliveryAttempt, total: number): string {
  const mark = attempt.ok ? style.green("✓") : style.red("✗");
  // A duplicate reads "200 (duplicate: already received)", as in `trigger`.
  const outcome = describeAttempt(attempt);
  return `     ${mark} attempt ${attempt.attempt}/${total}  ${attempt.ok ? style.green(outcome) : style.red(outcome)}  ${style.dim(`${attempt.latencyMs} ms`)}`;
}

function responseError(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    return typeof parsed.error === "string" ? parsed.error : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { receiver: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    out(HELP);
    return 0;
  }
  const started = performance.now();
  const spec = chooseReceiver(values.receiver);
  const storeDir = mkdtempSync(join(tmpdir(), "mappa-demo-"));
  const receiver = new Receiver(spec, join(storeDir, "mappa-webhooks.db"));
  const mappa = createDeliverySimulator({
    secret: DEMO_SECRET,
    timeScale: TIME_SCALE,
    timeoutMs: 5_000,
  });
  const results: StepResult[] = [];

  out(style.bold("Mappa webhooks demo: a local receiver, a simulated Mappa, six deliveries"));
  out(style.dim(`Receiver: ${spec.label}`));
  try {
    return await play(receiver, mappa, results, started);
  } finally {
    await receiver.stop();
    rmSync(storeDir, { recursive: true, force: true });
  }
}

async function play(
  receiver: Receiver,
  mappa: ReturnType<typeof createDeliverySimulator>,
  results: StepResult[],
  started: number,
): Promise<number> {
  const port = await receiver.start(0);
  const url = `http://127.0.0.1:${port}/webhooks/mappa`;
  out(style.dim(`Listening on ${url}; Mappa's retry waits are scaled ×${TIME_SCALE}.`));
  if (receiver.store !== undefined) out(style.dim(`Receiver's ${receiver.store}`));
  out(
    style.dim(
      'Events in Mappa\'s current wire shape: {id, type, createdAt, timestamp, data}, status "succeeded" or "failed".',
    ),
  );

  const step = async (title: string, run: (differences: string[]) => Promise<void>) => {
    out();
    out(style.bold(`${results.length + 1}. ${title}`));
    const differences: string[] = [];
    try {
      await run(differences);
    } catch (error) {
      differences.push(
        `unexpected error: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    results.push({ title, differences });
    out(
      differences.length === 0
        ? `   ${style.green("✓ as expected")}`
        : `   ${style.red(`✗ ${differences.join("; ")}`)}`,
    );
  };

  /** Delivers like Mappa; expects 200 on the first attempt and the receiver's log line. */
  const deliverHandled = async (
    event: ReturnType<typeof createTestEvent>,
    differences: string[],
  ) => {
    const from = receiver.lines.length;
    const report = await mappa.deliver(url, event, {
      onAttempt: (attempt) => out(attemptLine(attempt, 5)),
    });
    if (!report.delivered || report.attempts.length !== 1) {
      differences.push(
        `expected 200 on the first attempt, got ${report.attempts.map(describeAttempt).join(", ")}`,
      );
      return undefined;
    }
    const line = await receiver.waitForLine((l) => isHandledLine(l, event), LOG_WAIT_MS, from);
    if (line === undefined)
      differences.push(`the receiver did not log "[mappa] ${event.type} ${event.id}"`);
    else out(`     receiver: ${style.cyan(line)}`);
    return line;
  };

  /** Sends a hand-made delivery once and expects a 401 with `code`, and no handler run. */
  const expectRejected = async (
    event: ReturnType<typeof createTestEvent>,
    delivery: { body: string; headers: Record<string, string> },
    code: string,
    differences: string[],
  ) => {
    const from = receiver.lines.length;
    const response = await fetch(url, {
      method: "POST",
      body: delivery.body,
      headers: delivery.headers,
    });
    const body = await response.text();
    const error = responseError(body);
    out(
      `     ${response.status === 401 ? style.green("✓") : style.red("✗")} ${response.status} ${error ?? body.slice(0, 80)}`,
    );
    if (response.status !== 401) differences.push(`expected 401, got ${response.status}`);
    if (error !== undefined && error !== code) differences.push(`expected ${code}, got ${error}`);
    const ids = logIdsOf(event);
    const handled = await receiver.waitForLine(
      (l) => ids.some((id) => l.includes(id)),
      QUIET_MS,
      from,
    );
    if (handled !== undefined) differences.push(`the receiver handled it: "${handled}"`);
    else out(style.dim("     the handler did not run"));
  };

  let firstEvent: ReturnType<typeof createTestEvent> | undefined;
  await step("A report completes", async (differences) => {
    const event = createTestEvent("report.completed");
    firstEvent = event;
    out(
      style.dim(
        `   Mappa → report.completed ${event.id} (report ${event.data.reportId}, status ${event.data.status})`,
      ),
    );
    await deliverHandled(event, differences);
  });

  await step("A report fails", async (differences) => {
    const event = createTestEvent("report.failed", {
      data: { error: { code: "audio_too_short" } },
    });
    out(style.dim(`   Mappa → report.failed ${event.id} (error ${event.data.error.code})`));
    const line = await deliverHandled(event, differences);
    if (line?.includes(event.data.error.code)) {
      out(style.dim(`     the handler got the error code: ${event.data.error.code}`));
    }
  });

  await step("A tampered delivery", async (differences) => {
    const event = createTestEvent("report.completed");
    const signed = await createSignedDelivery(event, { secret: DEMO_SECRET });
    const forged = signed.body.replace(event.data.reportId, "cmforgedreport000000000000");
    out(style.dim("   Someone changes the reportId of a signed delivery and sends it on"));
    await expectRejected(
      event,
      { body: forged, headers: signed.headers },
      "signature_mismatch",
      differences,
    );
  });

  await step("A replay of an old delivery", async (differences) => {
    const event = createTestEvent("report.completed");
    const captured = await createSignedDelivery(event, {
      secret: DEMO_SECRET,
      timestamp: Math.floor(Date.now() / 1000) - 600,
    });
    out(style.dim("   A genuine delivery captured 10 minutes ago is sent again, unchanged"));
    await expectRejected(event, captured, "timestamp_outside_tolerance", differences);
  });

  await step("A duplicate delivery", async (differences) => {
    const event = createTestEvent("matching.completed");
    out(
      style.dim(
        `   Mappa → matching.completed ${event.id}, then the same event again (its 200 was lost)`,
      ),
    );
    await deliverHandled(event, differences);
    const again: DeliveryReport = await mappa.deliver(url, event, {
      onAttempt: (attempt) => out(attemptLine(attempt, 5)),
    });
    if (!again.delivered)
      differences.push("the duplicate was not answered 2xx, so Mappa would retry it");
    await sleep(QUIET_MS);
    const lines = receiver.handledLines(event);
    out(style.dim(`     receiver log lines for ${event.id}: ${lines.length}`));
    if (lines.length !== 1)
      differences.push(
        `expected the event handled once, the receiver logged it ${lines.length} times`,
      );
  });

  /** Step 1's event once more, after the restart: a store in a file still knows it. */
  const afterRestart = async (event: ReturnType<typeof createTestEvent>, differences: string[]) => {
    const store = receiver.store;
    if (store === undefined) return;
    if (!store.startsWith("store: SQLite")) {
      out(
        style.dim("     (on the memory store a restart forgets handled events; SQLite keeps them)"),
      );
      return;
    }
    out(style.dim(`   After the restart, Mappa sends step 1's ${event.id} again`));
    const before = receiver.handledLines(event).length;
    const again = await mappa.deliver(url, event, {
      onAttempt: (attempt) => out(attemptLine(attempt, 5)),
    });
    const last = again.attempts[again.attempts.length - 1];
    if (!again.delivered || last === undefined || !isDuplicateAnswer(last))
      differences.push(
        `expected a duplicate after the restart, got ${again.attempts.map(describeAttempt).join(", ")}`,
      );
    await sleep(QUIET_MS);
    if (receiver.handledLines(event).length !== before)
      differences.push("the restarted receiver ran the handler of step 1's event again");
    else out(style.dim("     the SQLite file kept it across the restart: the handler did not run"));
  };

  await step("A receiver outage recovers through the retry schedule", async (differences) => {
    const event = createTestEvent("report.completed");
    await receiver.stop();
    out(
      style.dim("   The receiver is stopped (a deploy, a crash); Mappa sends an event meanwhile"),
    );
    let restart: Promise<number> | undefined;
    const report = await mappa.deliver(url, event, {
      onAttempt: (attempt) => {
        out(attemptLine(attempt, 5));
        if (!attempt.ok && attempt.attempt === 3 && restart === undefined) {
          out(style.dim("     the receiver is started again while Mappa waits to retry"));
          restart = receiver.start(port);
          restart.catch(() => {});
        }
      },
      onRetryScheduled: ({ delayMs }) =>
        out(
          style.dim(
            `       Mappa waits ${formatDuration(delayMs)} (here ${formatDuration(delayMs * TIME_SCALE)})`,
          ),
        ),
    });
    if (restart !== undefined) await restart;
    const last = report.attempts[report.attempts.length - 1];
    if (!report.delivered || last === undefined) {
      differences.push(`not delivered: ${report.attempts.map(describeAttempt).join(", ")}`);
      return;
    }
    const failed = report.attempts.filter((a) => !a.ok);
    if (failed.length < 2 || failed.some((a) => a.status !== undefined)) {
      differences.push(
        `expected at least two refused connections first, got ${report.attempts.map(describeAttempt).join(", ")}`,
      );
    }
    out(
      `     ${style.green(`delivered on attempt ${last.attempt}`)}${style.dim(`: on Mappa's real schedule ${formatDuration(last.scheduledAtMs)} after the first attempt`)}`,
    );
    const line = await receiver.waitForLine((l) => isHandledLine(l, event), LOG_WAIT_MS);
    if (line === undefined) differences.push("the receiver did not log the recovered event");
    else out(`     receiver: ${style.cyan(line)}`);
    if (firstEvent !== undefined) await afterRestart(firstEvent, differences);
  });

  await receiver.stop();
  const seconds = formatDuration(performance.now() - started);
  const failed = results.filter((r) => r.differences.length > 0);
  out();
  if (failed.length === 0) {
    out(
      style.green(style.bold(`✓ All ${results.length} steps behaved as expected, in ${seconds}.`)),
    );
    return 0;
  }
  out(
    style.red(
      style.bold(
        `✗ ${failed.length} of ${results.length} steps did not behave as expected (${seconds}):`,
      ),
    ),
  );
  for (const result of failed)
    out(style.red(`  - ${result.title}: ${result.differences.join("; ")}`));
  return 1;
}

const watchdog = setTimeout(() => {
  process.stderr.write(`demo: still running after ${DEMO_TIMEOUT_MS / 1000} s; giving up\n`);
  process.exit(1);
}, DEMO_TIMEOUT_MS);
watchdog.unref();

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`demo: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
