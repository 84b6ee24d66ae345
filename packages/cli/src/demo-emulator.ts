// `pnpm demo:emulator`: a local Mappa creates real jobs and delivers their webhooks to the
// Express example: a report that succeeds, one that fails, and one whose first two deliveries are
// lost and recover through the retry schedule. Exits 0 only when each one arrived as it should.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  startMappaEmulator,
  type WebhookAttempt,
  type WebhookDelivery,
} from "@mappa-webhooks/emulator";
import { colorEnabled, createStyle } from "./output.js";

const SECRET = "whsec_demo_emulator_local_only_7a2c";
const TIME_SCALE = 0.01;
const TIMEOUT_MS = 90_000;

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
const style = createStyle(colorEnabled(process.stdout));
const out = (line = "") => process.stdout.write(`${line}\n`);

/** Starts the receiver with its SQLite store in `sqliteFile` (SQLITE_FILE). */
function startReceiver(
  sqliteFile: string,
): Promise<{ child: ChildProcess; url: string; log: string[] }> {
  const example = join(root, "examples/express/server.js");
  const script = existsSync(example) ? example : join(here, "demo-receiver.js");
  const child = spawn(process.execPath, [script], {
    cwd: dirname(script),
    env: {
      ...process.env,
      PORT: "0",
      HOST: "127.0.0.1",
      MAPPA_WEBHOOK_SECRET: SECRET,
      REDIS_URL: "",
      SQLITE_FILE: sqliteFile,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log: string[] = [];
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${script} did not start within 20 s`)),
      20_000,
    );
    let buffer = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      let newline = buffer.indexOf("\n");
      while (newline !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        newline = buffer.indexOf("\n");
        const listening = /listening on (http:\/\/\S+)/.exec(line);
        if (listening) {
          clearTimeout(timer);
          resolvePromise({ child, url: `${listening[1]}/webhooks/mappa`, log });
        } else if (line.trim() !== "") {
          log.push(line);
          out(`  ${style.dim("receiver:")} ${line}`);
        }
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => process.stderr.write(chunk));
    child.once("exit", (code) =>
      reject(new Error(`${script} exited with ${code} before listening`)),
    );
  });
}

function describe(delivery: WebhookDelivery, attempt: WebhookAttempt): string {
  const result =
    attempt.status === undefined
      ? style.red(
          `${attempt.errorCode}${attempt.fault === "drop" ? " (lost on the way: drop fault)" : ""}`,
        )
      : attempt.ok
        ? style.green(`${attempt.status} in ${Math.round(attempt.latencyMs)} ms`)
        : style.red(String(attempt.status));
  const next = delivery.nextAttemptAt === null ? "" : style.dim(" → retried on Mappa's schedule");
  return `  ${style.dim("mappa →")} ${delivery.type} ${delivery.eventId} attempt ${attempt.attempt}: ${result}${next}`;
}

async function main(): Promise<number> {
  const started = performance.now();
  out(
    style.bold(
      "Mappa emulator demo: real jobs on a local Mappa, their webhooks to examples/express",
    ),
  );
  // A store of this run's own: the emulator's next run must not find its events handled.
  const storeDir = mkdtempSync(join(tmpdir(), "mappa-demo-emulator-"));
  const receiver = await startReceiver(join(storeDir, "mappa-webhooks.db"));
  out(`receiver: examples/express on ${receiver.url}`);
  const mappa = await startMappaEmulator({
    secret: SECRET,
    timeScale: TIME_SCALE,
    onWebhookAttempt: (delivery, attempt) => out(describe(delivery, attempt)),
  });
  out(`emulator on ${mappa.url} (time ×${TIME_SCALE}: a 150 s report takes 1.5 s)`);
  out();
  const api = async (path: string, init: RequestInit = {}): Promise<Record<string, unknown>> => {
    const response = await fetch(`${mappa.url}${path}`, {
      ...init,
      headers: { "Mappa-Api-Key": "demo", ...(init.headers as Record<string, string> | undefined) },
    });
    return (await response.json()) as Record<string, unknown>;
  };
  try {
    const form = new FormData();
    form.append("file", new Blob([new Uint8Array(16_000)], { type: "audio/wav" }), "call.wav");
    form.append("label", "call");
    const file = await api("/v1/files", { method: "POST", body: form });
    out(`uploaded ${file.mediaId} (POST /v1/files)`);
    const create = async (label: string) => {
      const receipt = await api("/v1/reports/jobs", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": `demo-${label}` },
        body: JSON.stringify({
          media: { mediaId: file.mediaId },
          output: { template: "general_report" },
          target: { strategy: "dominant", on_miss: "error" },
          label,
          webhook: { url: receiver.url },
        }),
      });
      out(`created ${receipt.jobId} "${label}" (POST /v1/reports/jobs → ${receipt.status})`);
      return receipt.jobId as string;
    };
    const ok = await create("Discovery call");
    const failed = await create("fail:target_not_found");
    mappa.planNext(1, { webhook: { drop: 2 } });
    const flaky = await create("Renewal call");
    out(style.dim(`  (the first two deliveries of ${flaky} will be lost on the way)`));
    out();
    const jobs = [ok, failed, flaky];
    const deadline = performance.now() + TIMEOUT_MS;
    while (!jobs.every((id) => mappa.deliveries({ jobId: id })[0]?.state === "delivered")) {
      if (performance.now() > deadline)
        throw new Error("the deliveries did not all arrive in time");
      await new Promise((done) => setTimeout(done, 25));
    }
    await new Promise((done) => setTimeout(done, 300)); // let the receiver's log lines through
    out();
    const report = (await api(`/v1/reports/by-job/${ok}`)) as {
      id: string;
      json: { title: string };
    };
    out(`GET /v1/reports/by-job/${ok} → ${report.id}: "${report.json.title}"`);
    const checks: [string, boolean][] = [
      [
        `${ok}: report.completed handled`,
        receiver.log.some((l) => l.includes("report.completed") && l.includes(report.id)),
      ],
      [
        `${failed}: report.failed handled with target_not_found`,
        receiver.log.some((l) => l.includes("report.failed") && l.includes("target_not_found")),
      ],
      [
        `${flaky}: delivered on attempt 3 after two lost ones`,
        mappa.deliveries({ jobId: flaky })[0]?.attempts.length === 3,
      ],
    ];
    for (const [what, passed] of checks)
      out(`${passed ? style.green("✓") : style.red("✗")} ${what}`);
    const allPassed = checks.every(([, passed]) => passed);
    out(
      allPassed
        ? style.green(
            `✓ All 3 jobs behaved as expected, in ${((performance.now() - started) / 1000).toFixed(1)} s.`,
          )
        : style.red("✗ Something did not behave as expected."),
    );
    return allPassed ? 0 : 1;
  } finally {
    await mappa.close();
    const exited = receiver.child.exitCode === null ? once(receiver.child, "exit") : undefined;
    receiver.child.kill();
    await exited;
    rmSync(storeDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `demo failed: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
