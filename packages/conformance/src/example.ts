import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createTestEvent, signPayload } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { send, stallMidBody } from "./http.js";

/** An example app running as a child process. */
export interface RunningExample {
  /** e.g. http://127.0.0.1:PORT, from the `listening on ...` line. */
  baseUrl: string;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** Resolves with the first output line matching `pattern`, waiting at most `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

const LISTENING = /^listening on (http:\/\/\S+)$/m;

/**
 * Starts `node <entry>` in an example folder with PORT=0 and waits for its one
 * `listening on http://127.0.0.1:<port>` line.
 *
 * @example
 * ```ts
 * const example = await startExample("/repo/examples/express", { MAPPA_WEBHOOK_SECRET: "whsec_x" });
 * await example.stop();
 * ```
 */
export async function startExample(
  dir: string,
  env: Record<string, string>,
  entry = "server.js",
  // Generous: a NestJS or Next app can take tens of seconds to start on a busy CI machine.
  startTimeoutMs = 120_000,
): Promise<RunningExample> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, PORT: "0", ...env };
  // The examples switch to a shared store when REDIS_URL is set; the e2e runs them standalone.
  delete childEnv.REDIS_URL;
  delete childEnv.HOST;
  const child: ChildProcess = spawn(process.execPath, [entry], {
    cwd: dir,
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString("utf8");
    for (const wake of [...waiters]) wake();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.on("exit", () => {
      exited = true;
      for (const wake of [...waiters]) wake();
      resolve();
    });
  });

  const waitForLine = (pattern: RegExp, timeoutMs = 5_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = output.split("\n").find((l) => pattern.test(l));
        if (line !== undefined) {
          finish();
          resolve(line);
        } else if (exited) {
          finish();
          reject(new Error(`the example exited before printing ${pattern}:\n${output}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${output}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      const killTimer = setTimeout(() => child.kill("SIGKILL"), 3_000);
      await exit;
      clearTimeout(killTimer);
    }
  };

  try {
    const line = await waitForLine(LISTENING, startTimeoutMs);
    const baseUrl = LISTENING.exec(line)?.[1] as string;
    return { baseUrl, output: () => output, waitForLine, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The workspace's built CLI (`mappa-webhooks`), which the examples' READMEs tell users to run. */
const CLI = fileURLToPath(new URL("../../cli/dist/cli.js", import.meta.url));

interface CliRun {
  code: number | null;
  stdout: string;
  /** stdout and stderr, for failure messages. */
  output: string;
}

/** Runs `node <cli> ...args`, killed after `timeoutMs`. */
async function runCli(args: string[], timeoutMs = 60_000): Promise<CliRun> {
  if (!existsSync(CLI)) {
    throw new Error(
      `${CLI} is missing: build the CLI first (pnpm turbo run build --filter=@mappa-webhooks/cli).`,
    );
  }
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
    output += chunk.toString("utf8");
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString("utf8");
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  clearTimeout(timer);
  return { code, stdout, output };
}

/**
 * Registers the end-to-end checks every example must pass: it starts the example as a
 * process, posts signed deliveries (typed events logged once, duplicates not re-run, forgeries
 * refused and logged as `[mappa:error]`), checks the JSON 405 for other methods and a 408 for a
 * stalled body, sends an event with the CLI's `trigger` (the workspace's
 * `packages/cli/dist/cli.js`, built first) and checks `/api/echo` still parses JSON.
 *
 * @example
 * ```ts
 * describeExampleApp("examples/express", fileURLToPath(new URL("../../../examples/express", import.meta.url)));
 * ```
 */
export function describeExampleApp(name: string, dir: string): void {
  describe(`${name} (example app, e2e)`, () => {
    const secret = "whsec_example_e2e_0c9a";
    let example: RunningExample | undefined;
    const running = () => {
      if (example === undefined) throw new Error("the example did not start");
      return example;
    };
    beforeAll(async () => {
      example = await startExample(dir, { MAPPA_WEBHOOK_SECRET: secret });
    }, 150_000);
    afterAll(async () => {
      await example?.stop();
    });

    const post = async (event: object, signWith = secret) => {
      const body = JSON.stringify(event);
      const signature = await signPayload({ payload: body, secret: signWith });
      return send(`${running().baseUrl}/webhooks/mappa`, {
        headers: { "content-type": "application/json", "mappa-signature": signature },
        body,
      });
    };

    it("prints exactly one listening line with the real port", () => {
      const lines = running()
        .output()
        .split("\n")
        .filter((l) => l.startsWith("listening on"));
      expect(lines).toEqual([`listening on ${running().baseUrl}`]);
      expect(running().baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
    });

    it("logs each typed event once and does not run a duplicate again", async () => {
      const id = `evt_e2e_${Date.now()}`;
      const event = createTestEvent("report.completed", {
        id,
        data: { jobId: `job_${id}`, reportId: "rep_e2e" },
      });
      const first = await post(event);
      expect(first.status).toBe(200);
      const line = await running().waitForLine(new RegExp(`^\\[mappa\\] report\\.completed ${id}`));
      expect(line).toContain("rep_e2e");
      const again = await post(event);
      expect(again.status).toBe(200);
      expect(JSON.parse(again.body)).toEqual({ received: true, duplicate: true });
      const failed = createTestEvent("report.failed", {
        id: `${id}_failed`,
        data: {
          jobId: `job_${id}`,
          error: { code: "target_not_found", message: "Could not identify target speaker" },
        },
      });
      expect((await post(failed)).status).toBe(200);
      await running().waitForLine(new RegExp(`^\\[mappa\\] report\\.failed ${id}_failed`));
      const logged = running()
        .output()
        .split("\n")
        .filter((l) => l.startsWith(`[mappa] report.completed ${id}`));
      expect(logged).toHaveLength(1);
    });

    it("refuses a delivery signed with another secret, and logs no event", async () => {
      const id = `evt_e2e_forged_${Date.now()}`;
      const response = await post(
        createTestEvent("report.completed", { id }),
        "whsec_not_the_secret",
      );
      expect(response.status).toBe(401);
      expect(running().output()).not.toMatch(new RegExp(`\\[mappa\\] \\S+ ${escapeRegExp(id)}`));
      // Rejected deliveries are logged, so a misconfigured secret shows in the server's output.
      await running().waitForLine(/^\[mappa:error\] signature_mismatch\b/);
    });

    it.each(["GET", "PUT", "DELETE"])(
      "answers %s on the webhook path with 405 JSON and Allow: POST",
      async (method) => {
        const response = await send(`${running().baseUrl}/webhooks/mappa`, { method });
        expect(response.status).toBe(405);
        expect(response.headers.allow).toBe("POST");
        expect(JSON.parse(response.body)).toMatchObject({ error: "method_not_allowed" });
      },
    );

    it("answers a body that stalls with 408 after the default 10 s deadline, not never", async () => {
      const body = JSON.stringify({ id: "evt_e2e_stalled", type: "report.completed" });
      const result = await stallMidBody(`${running().baseUrl}/webhooks/mappa`, {
        headers: { "content-type": "application/json", "mappa-signature": "t=1,v1=00" },
        body,
        sentBytes: 5,
        timeoutMs: 30_000,
      });
      expect(result.status).toBe(408);
      expect(JSON.parse(result.body)).toMatchObject({ error: "body_timeout" });
      await running().waitForLine(/^\[mappa:error\] body_timeout\b/);
    }, 40_000);

    it("parses JSON on /api/echo", async () => {
      const response = await send(`${running().baseUrl}/api/echo`, {
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ hello: "world", n: [1, 2] }),
      });
      expect(response.status).toBe(200);
      expect(JSON.parse(response.body)).toEqual({ echo: { hello: "world", n: [1, 2] } });
    });

    it("accepts an event sent with the CLI's trigger, and logs it", async () => {
      const trigger = await runCli([
        "trigger",
        "matching.completed",
        "--url",
        `${running().baseUrl}/webhooks/mappa`,
        "--secret",
        secret,
        "--no-retry",
        "--json",
      ]);
      expect(trigger.code, trigger.output).toBe(0);
      const report = JSON.parse(trigger.stdout) as {
        delivered: boolean;
        duplicate: boolean;
        event: { id: string; type: string; data: { matchingId: string; status: string } };
        attempts: Array<{ status: number; responseBody: string }>;
      };
      expect(report).toMatchObject({ delivered: true, duplicate: false });
      expect(report.event.type).toBe("matching.completed");
      expect(report.event.id).toMatch(/^evt_/);
      expect(report.event.data.status).toBe("succeeded");
      expect(report.attempts.map((attempt) => attempt.status)).toEqual([200]);
      expect(JSON.parse(report.attempts[0]?.responseBody ?? "")).toEqual({ received: true });
      await running().waitForLine(
        new RegExp(
          `^\\[mappa\\] matching\\.completed ${escapeRegExp(report.event.id)} matching=${escapeRegExp(report.event.data.matchingId)}$`,
        ),
        15_000,
      );
    });
  });
}
