import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const read = (file: string) => readFileSync(new URL(`../dist/${file}`, import.meta.url), "utf8");

// The kit must run outside Node (edge runtimes, browsers' test runners): the built files may
// import nothing but the core, and no Node built-in.
describe("the built package", () => {
  it.each(["index.js", "index.cjs"])("%s imports only @mappa-webhooks/core", (file) => {
    const source = read(file);
    const specifiers = [...source.matchAll(/(?:from\s+|require\()\s*["']([^"']+)["']/g)].map(
      (match) => match[1],
    );
    expect(new Set(specifiers)).toEqual(new Set(["@mappa-webhooks/core"]));
    expect(source).not.toMatch(/["']node:/);
  });

  it("exports the whole kit from the ESM build", async () => {
    const kit = await import(new URL("../dist/index.js", import.meta.url).href);
    for (const name of [
      "createTestEvent",
      "createEventId",
      "mergeData",
      "signPayload",
      "createSignedDelivery",
      "createSignedRequest",
      "simulateDelivery",
      "createDeliverySimulator",
      "MAPPA_RETRY_SCHEDULE_MS",
      "MAPPA_EVENT_TYPES",
    ]) {
      expect(kit[name], name).toBeDefined();
    }
  });
});
