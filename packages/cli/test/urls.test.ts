// trigger --url, listen --forward-to (and doctor's URL) accept the same forms and refuse the same
// garbage, with exit 2 and a message that names the flag and gives an example.
import { createSignedDelivery, createTestEvent } from "@mappa-webhooks/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Running, recordingServer, run, SECRET, startListen } from "./helpers.js";

let app: Awaited<ReturnType<typeof recordingServer>>;
let port: string;
const listeners: Running[] = [];

beforeAll(async () => {
  app = await recordingServer([200]);
  port = new URL(app.url).port;
});
afterAll(async () => {
  await Promise.all(listeners.map((listener) => listener.stop()));
  await app.close();
});

const forms = () => [
  `http://127.0.0.1:${port}/webhooks/mappa`,
  `127.0.0.1:${port}/webhooks/mappa`,
  `localhost:${port}/webhooks/mappa`,
];

describe("the URL forms every command takes", () => {
  it("trigger --url delivers to each form, a bare host:port as http://", async () => {
    for (const form of forms()) {
      const before = app.received.length;
      const result = await run([
        "trigger",
        "report.completed",
        "--url",
        form,
        "--secret",
        SECRET,
        "--no-retry",
      ]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(`→ POST http://${form.replace(/^http:\/\//, "")}`);
      expect(app.received.length).toBe(before + 1);
    }
  });

  it("listen --forward-to forwards to each form", async () => {
    for (const form of forms()) {
      const { listener, url } = await startListen(["--forward-to", form, "--no-inspector"]);
      listeners.push(listener);
      const before = app.received.length;
      const { body, headers } = await createSignedDelivery(createTestEvent("report.completed"), {
        secret: SECRET,
      });
      const response = await fetch(url, { method: "POST", body, headers });
      expect(response.status).toBe(200);
      expect(app.received.length).toBe(before + 1);
      expect(listener.lines[1]).toBe(`forwarding to http://${form.replace(/^http:\/\//, "")}`);
    }
  });

  const garbage: Array<[string, RegExp]> = [
    ["htp:/bad", /"htp:\/bad" is not an http\(s\) URL, e\.g\. http/],
    ["http:/one-slash", /"http:\/one-slash" is not a URL: write http:\/\/<host>…/],
    [
      "ftp://example.com/x",
      /"ftp:\/\/example\.com\/x" must be http:\/\/ or https:\/\/, not ftp:\/\//,
    ],
    ["webhooks/mappa", /"webhooks\/mappa" is not a URL: give http\(s\):\/\/… or host:port\/path/],
    ["http://", /"http:\/\/" is not a URL: write http:\/\/<host>…/],
  ];
  it.each(garbage)("trigger and listen both refuse %s with exit 2", async (value, message) => {
    const trigger = await run(["trigger", "report.completed", "--url", value, "--secret", SECRET]);
    expect(trigger.code).toBe(2);
    expect(trigger.stderr).toMatch(new RegExp(`--url ${message.source}`));
    const listen = await run(["listen", "--port", "0", "--forward-to", value, "--secret", SECRET]);
    expect(listen.code).toBe(2);
    expect(listen.stderr).toMatch(new RegExp(`--forward-to ${message.source}`));
    expect(listen.stdout).not.toContain("listening on");
  });
});
