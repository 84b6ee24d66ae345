// Runs the example as a real child process against the emulator on a manual clock: the app
// uploads a file and creates a report job, the test advances the clock, the emulator delivers the
// signed webhook, and the app fetches the report.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startMappaEmulator } from "@mappa-webhooks/emulator";
import { afterEach, expect, it } from "vitest";

const secret = "whsec_example_emulator";
const running = [];

afterEach(async () => {
  for (const { child, emulator } of running.splice(0)) {
    child.kill("SIGKILL");
    await emulator.close();
  }
});

async function start(env = {}) {
  const emulator = await startMappaEmulator({ clock: "manual", secret, apiKey: "example_key" });
  const child = spawn(process.execPath, [fileURLToPath(new URL("../server.js", import.meta.url))], {
    env: {
      ...process.env,
      PORT: "0",
      MAPPA_WEBHOOK_SECRET: secret,
      MAPPA_BASE_URL: emulator.url,
      MAPPA_API_KEY: "example_key",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.push({ child, emulator });
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  const waitFor = async (pattern, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(output);
      if (match) return match;
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`no ${pattern} in:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  return { emulator, waitFor };
}

it("creates a report job, receives its webhook and fetches the report", async () => {
  const { emulator, waitFor } = await start();
  const [, jobId] = await waitFor(/job created (\S+)/);
  expect(emulator.job(jobId)?.status).toBe("queued");
  await emulator.advance(150_000);
  const [, reportId] = await waitFor(
    /report ready (\S+) \(job (\S+)\): General report: Discovery call/,
  );
  expect(reportId).toBe(emulator.job(jobId)?.reportId);
  expect(emulator.deliveries({ jobId })[0]?.attempts.map((a) => a.status)).toEqual([200]);
});

it("logs a failed report with its error code", async () => {
  const { emulator, waitFor } = await start({ REPORT_LABEL: "fail:target_not_found" });
  const [, jobId] = await waitFor(/job created (\S+)/);
  await emulator.advance(150_000);
  await waitFor(new RegExp(`report failed \\(job ${jobId}\\): target_not_found`));
});
