// `mappa-webhooks emulator` and `pnpm demo:emulator`, run as real processes from dist/.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { startMappaEmulator } from "@mappa-webhooks/emulator";
import { afterEach, describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const DEMO_EMULATOR = fileURLToPath(new URL("../dist/demo-emulator.js", import.meta.url));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

function launch(script: string, args: string[], env: Record<string, string> = {}) {
  const base = { ...process.env };
  delete base.MAPPA_WEBHOOK_SECRET;
  const child = spawn(process.execPath, [script, ...args], {
    env: { ...base, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const output = { stdout: "", stderr: "" };
  child.stdout?.on("data", (c: Buffer) => (output.stdout += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (output.stderr += c.toString()));
  const waitFor = async (pattern: RegExp, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(output.stdout);
      if (match) return match;
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`no ${pattern} in:\n${output.stdout}\n${output.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const exited = async (timeoutMs = 60_000) => {
    if (child.exitCode !== null) return child.exitCode;
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    const [code] = (await once(child, "exit")) as [number | null];
    clearTimeout(timer);
    return code;
  };
  return { child, output, waitFor, exited };
}

describe("mappa-webhooks emulator", () => {
  it("prints its URL on a line of its own, serves the API with --api-key, logs each webhook attempt, stops on SIGINT", async () => {
    const received: string[] = [];
    const receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c));
      req.on("end", () => {
        received.push(body);
        res.end("ok");
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks/mappa`;
    try {
      const cli = launch(
        CLI,
        ["emulator", "--port", "0", "--api-key", "cli_key", "--time-scale", "0.01"],
        { MAPPA_WEBHOOK_SECRET: "whsec_cli_emulator" },
      );
      const [, url] = await cli.waitFor(/^emulator on (http:\/\/127\.0\.0\.1:\d+)$/m);
      await cli.waitFor(/webhook secret +MAPPA_WEBHOOK_SECRET=whsec_cli_emulator/);
      expect(
        (await fetch(`${url}/v1/files`, { headers: { "Mappa-Api-Key": "wrong" } })).status,
      ).toBe(401);
      const headers = { "Mappa-Api-Key": "cli_key" };
      const form = new FormData();
      form.append("file", new Blob([new Uint8Array(10)]), "call");
      form.append("label", "call");
      const { mediaId } = (await (
        await fetch(`${url}/v1/files`, { method: "POST", body: form, headers })
      ).json()) as { mediaId: string };
      const created = await fetch(`${url}/v1/reports/jobs`, {
        method: "POST",
        headers: { ...headers, "Content-Type": "application/json", "Idempotency-Key": "cli-1" },
        body: JSON.stringify({
          media: { mediaId },
          output: { template: "general_report" },
          target: { strategy: "dominant", on_miss: "error" },
          webhook: { url: hook },
        }),
      });
      const { jobId } = (await created.json()) as { jobId: string };
      await cli.waitFor(
        new RegExp(
          `report\\.completed evt_\\w+ job ${jobId} → ${hook.replaceAll(".", "\\.")} attempt 1 \\(scheduled\\): 200 in \\d+ ms delivered`,
        ),
      );
      expect(received).toHaveLength(1);
      cli.child.kill("SIGINT");
      expect(await cli.exited()).toBe(0);
    } finally {
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  });

  it("rejects a bad flag with exit 2 and a pointer to --help", async () => {
    const cli = launch(CLI, ["emulator", "--shape", "nope"]);
    expect(await cli.exited()).toBe(2);
    expect(cli.output.stderr).toContain(
      '--shape must be one of current, guide, mappa-node-1.2, got "nope"',
    );
    expect(cli.output.stderr).toMatch(/Run `.*emulator --help` for usage/);
  });
});

describe("the emulator in front of listen", () => {
  it("the listen inspector shows the emulator's deliveries, forwarded to the app", async () => {
    const secret = "whsec_cli_emulator_listen";
    const app = createServer((req, res) => {
      req.resume();
      req.on("end", () => res.end("ok"));
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}/webhooks/mappa`;
    const emulator = await startMappaEmulator({ clock: "manual", secret });
    try {
      const listen = launch(CLI, [
        "listen",
        "--port",
        "0",
        "--inspector-port",
        "0",
        "--secret",
        secret,
        "--forward-to",
        appUrl,
      ]);
      const [, listening] = await listen.waitFor(/listening on (http:\/\/\S+)/);
      const [, inspector] = await listen.waitFor(/inspector on (http:\/\/\S+?)\/?$/m);
      const hook =
        new URL(listening as string).pathname === "/"
          ? new URL("/webhooks/mappa", listening).href
          : (listening as string);
      const headers = { "Mappa-Api-Key": "k" };
      const form = new FormData();
      form.append("file", new Blob([new Uint8Array(10)]), "call");
      form.append("label", "call");
      const { mediaId } = (await (
        await fetch(`${emulator.url}/v1/files`, { method: "POST", body: form, headers })
      ).json()) as { mediaId: string };
      const created = await fetch(`${emulator.url}/v1/reports/jobs`, {
        method: "POST",
        headers: { ...headers, "Content-Type": "application/json", "Idempotency-Key": "listen-1" },
        body: JSON.stringify({
          media: { mediaId },
          output: { template: "general_report" },
          target: { strategy: "dominant", on_miss: "error" },
          webhook: { url: hook },
        }),
      });
      const { jobId } = (await created.json()) as { jobId: string };
      await emulator.advance(150_000);
      const [delivery] = emulator.deliveries({ jobId });
      expect(delivery?.attempts.map((a) => a.status)).toEqual([200]);
      const listed = (await (await fetch(`${inspector}/api/deliveries`)).json()) as {
        deliveries: unknown[];
      };
      expect(JSON.stringify(listed.deliveries)).toContain(delivery?.eventId as string);
    } finally {
      await emulator.close();
      await new Promise<void>((resolve) => app.close(() => resolve()));
    }
  });
});

describe("pnpm demo:emulator", () => {
  it("creates three jobs on the emulator and sees each webhook arrive at the Express example", async () => {
    const demo = launch(DEMO_EMULATOR, []);
    expect(await demo.exited(90_000)).toBe(0);
    expect(demo.output.stdout).toMatch(
      /receiver: \[mappa\] report\.completed evt_\w+ report=rep_\w+/,
    );
    expect(demo.output.stdout).toMatch(
      /receiver: \[mappa\] report\.failed evt_\w+ error=target_not_found/,
    );
    expect(demo.output.stdout).toMatch(/attempt 2: DROPPED .*\n(.*\n)*.*attempt 3: 200/);
    expect(demo.output.stdout).toContain("✓ All 3 jobs behaved as expected");
  });
});
