import { describe, expect, it } from "vitest";
import {
  type MappaInstrumentation,
  type MappaProcessStart,
  startProcessTrace,
} from "../src/index.js";

const start = (extra: Partial<MappaProcessStart> = {}): MappaProcessStart => ({
  handoff: "bullmq",
  attempt: 1,
  startedAt: 0,
  ...extra,
});

describe("startProcessTrace", () => {
  it("is undefined without startProcess, and when startProcess throws or declines", () => {
    const noProcess: MappaInstrumentation = { startDelivery: () => undefined };
    expect(startProcessTrace(undefined, start())).toBeUndefined();
    expect(startProcessTrace(noProcess, start())).toBeUndefined();
    const throwing: MappaInstrumentation = {
      startDelivery: () => undefined,
      startProcess: () => {
        throw new Error("broken exporter");
      },
    };
    expect(startProcessTrace(throwing, start())).toBeUndefined();
  });

  it("passes an object carrier on, leaves anything else out, runs steps, and ends once", () => {
    const seen: MappaProcessStart[] = [];
    const ends: unknown[] = [];
    const instrumentation: MappaInstrumentation = {
      startDelivery: () => undefined,
      startProcess: (s) => {
        seen.push(s);
        return {
          step: () => ({
            run: () => {
              throw new Error("a scope that fails before running the step");
            },
            end: () => {
              throw new Error("and on end");
            },
          }),
          run: (fn) => fn(),
          end: (result) => void ends.push(result),
        };
      },
    };
    const trace = startProcessTrace(
      instrumentation,
      start({ carrier: { traceparent: "00-a-b-01" } }),
    );
    startProcessTrace(instrumentation, start({ carrier: "nope" as never }));
    expect(seen[0]?.carrier).toEqual({ traceparent: "00-a-b-01" });
    expect("carrier" in (seen[1] as object)).toBe(false);
    const step = trace?.step("report.completed");
    // The step's work runs even though the scope's run threw before calling it.
    expect(step?.run(() => 42)).toBe(42);
    expect(() => step?.end()).not.toThrow();
    trace?.end("failed", new Error("x"), true);
    trace?.end("handled");
    expect(ends).toEqual([
      {
        outcome: "failed",
        durationMs: expect.any(Number),
        error: expect.any(Error),
        willRetry: true,
      },
    ]);
  });
});
