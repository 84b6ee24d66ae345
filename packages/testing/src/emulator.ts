/**
 * `@mappa-webhooks/testing/emulator` (Node only): a local Mappa for your own test suites. Start
 * it in `beforeAll` on a manual clock, create jobs through your code under test (pointed at
 * `emulator.url`), `advance()` the clock, and assert on the webhooks your receiver got.
 *
 * Everything is re-exported from `@mappa-webhooks/emulator`; see its README for the API.
 *
 * @example
 * ```ts
 * import { startMappaEmulator, type MappaEmulator } from "@mappa-webhooks/testing/emulator";
 * import { afterAll, beforeAll, expect, it } from "vitest";
 *
 * let mappa: MappaEmulator;
 * beforeAll(async () => {
 *   mappa = await startMappaEmulator({ clock: "manual", secret: "whsec_test" });
 * });
 * afterAll(() => mappa.close());
 *
 * it("marks the order ready when the report webhook arrives", async () => {
 *   const jobId = await app.requestReport({ baseUrl: mappa.url }); // your code calls POST /v1/reports/jobs
 *   await mappa.advance(150_000); // the job runs, succeeds, and its webhook is delivered
 *   expect(mappa.deliveries({ jobId })[0]?.state).toBe("delivered");
 * });
 * ```
 */
export * from "@mappa-webhooks/emulator";
