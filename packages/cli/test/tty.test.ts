import { spawn } from "node:child_process";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI, recordingServer, testEnv } from "./helpers.js";

// A real terminal for the CLI: util-linux `script` runs it under a pseudo-terminal.
async function inTerminal(args: string[], env: Record<string, string> = {}) {
  const command = [process.execPath, CLI, ...args].map((part) => `'${part}'`).join(" ");
  const child = spawn("script", ["-qfec", command, "/dev/null"], {
    env: testEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  const [code] = (await once(child, "close")) as [number | null];
  // Escape characters shown as text, so the assertions can read them.
  return { code, output: output.replaceAll("\u001b", "<ESC>") };
}

let target: Awaited<ReturnType<typeof recordingServer>>;
beforeAll(async () => {
  target = await recordingServer([500, 200]);
});
afterAll(() => target.close());

describe("trigger on a terminal", () => {
  it("animates a spinner with a countdown and colours the outcome", async () => {
    const { code, output } = await inTerminal([
      "trigger",
      "report.completed",
      "--url",
      target.url,
      "--secret",
      "whsec_tty",
      "--time-scale",
      "0.05",
    ]);
    expect(code).toBe(0);
    expect(output).toMatch(/\r<ESC>\[K[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] attempt 1\/5 sending…/);
    expect(output).toMatch(/\r<ESC>\[K[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] attempt 2\/5 in \d+ ms…/);
    expect(output).toContain("<ESC>[31m500 handler_failed<ESC>[39m");
    expect(output).toContain("<ESC>[32m✓ delivered on attempt 2<ESC>[39m");
  });

  it("keeps the spinner but drops colour with NO_COLOR", async () => {
    const { code, output } = await inTerminal(
      ["trigger", "report.completed", "--url", target.url, "--secret", "whsec_tty", "--no-retry"],
      { NO_COLOR: "1" },
    );
    expect(code).toBe(0);
    expect(output).toMatch(/\r<ESC>\[K[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] attempt 1\/1 sending…/);
    expect(output).not.toMatch(/<ESC>\[\d+m/);
  });
});
