import { describe, expectTypeOf, it } from "vitest";
import {
  type Job,
  type JobPlan,
  type MappaEmulator,
  type MappaEmulatorOptions,
  startMappaEmulator,
  type WebhookAttempt,
  type WebhookDelivery,
} from "../src/index.js";

describe("emulator types", () => {
  it("startMappaEmulator resolves with the handle", () => {
    expectTypeOf(startMappaEmulator).returns.resolves.toEqualTypeOf<MappaEmulator>();
    expectTypeOf<MappaEmulator["job"]>().returns.toEqualTypeOf<Job | undefined>();
    expectTypeOf<MappaEmulator["resend"]>().returns.resolves.toEqualTypeOf<WebhookAttempt>();
    expectTypeOf<WebhookDelivery["state"]>().toEqualTypeOf<
      "scheduled" | "sending" | "retrying" | "delivered" | "abandoned"
    >();
  });

  it("options and plans reject what the emulator does not do", () => {
    const ok: MappaEmulatorOptions = { clock: "manual", shape: "guide", credits: null };
    expectTypeOf(ok).toEqualTypeOf<MappaEmulatorOptions>();
    // @ts-expect-error: no such shape
    const badShape: MappaEmulatorOptions = { shape: "v3" };
    // @ts-expect-error: a failed outcome needs its error
    const noError: JobPlan = { outcome: { status: "failed" } };
    const queuedStage: JobPlan = {
      outcome: {
        status: "failed",
        error: { code: "x" },
        // @ts-expect-error: a job cannot fail while queued
        atStage: "queued",
      },
    };
    const faults: JobPlan = {
      webhook: { drop: "all", fail: 2, wrongSecret: "whsec_other", staleTimestampSec: 600 },
    };
    expectTypeOf(faults.webhook?.drop).toEqualTypeOf<number | "all" | undefined>();
    void [badShape, noError, queuedStage];
  });

  it("a job's optional fields are omitted, not null", () => {
    expectTypeOf<Job["reportId"]>().toEqualTypeOf<string | undefined>();
    expectTypeOf<Job["status"]>().toEqualTypeOf<
      "queued" | "running" | "succeeded" | "failed" | "canceled"
    >();
  });
});
