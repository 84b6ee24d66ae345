import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { colorEnabled, createSpinner, createStyle, formatDuration } from "../src/output.js";

/** A writable that records what was written and claims to be (or not be) a terminal. */
function terminal(isTTY: boolean): Writable & { isTTY: boolean; text(): string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  }) as Writable & { isTTY: boolean; text(): string };
  stream.isTTY = isTTY;
  stream.text = () => chunks.join("");
  return stream;
}

/** Waits (bounded) until the spinner drew `count` frames: timers are late on a loaded machine. */
async function framesDrawn(stream: { text(): string }, count: number): Promise<void> {
  for (let waited = 0; waited < 5_000; waited += 20) {
    if (stream.text().split("\r\u001b[K").length - 1 >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("colour", () => {
  it("is on for a terminal and off for a pipe", () => {
    expect(colorEnabled(terminal(true), {})).toBe(true);
    expect(colorEnabled(terminal(false), {})).toBe(false);
  });

  it("is off whenever NO_COLOR is set, and FORCE_COLOR turns it on for a pipe", () => {
    expect(colorEnabled(terminal(true), { NO_COLOR: "1" })).toBe(false);
    expect(colorEnabled(terminal(true), { NO_COLOR: "" })).toBe(true);
    expect(colorEnabled(terminal(false), { FORCE_COLOR: "1" })).toBe(true);
    expect(colorEnabled(terminal(false), { FORCE_COLOR: "0" })).toBe(false);
    expect(colorEnabled(terminal(false), { FORCE_COLOR: "1", NO_COLOR: "1" })).toBe(false);
  });

  it("wraps text in ANSI codes only when enabled", () => {
    expect(createStyle(true).red("x")).toBe("\u001b[31mx\u001b[39m");
    expect(createStyle(true).bold("x")).toBe("\u001b[1mx\u001b[22m");
    expect(createStyle(false).red("x")).toBe("x");
  });
});

describe("spinner", () => {
  it("animates on a terminal and replaces itself with the final line", async () => {
    const stream = terminal(true);
    const spinner = createSpinner(stream, true);
    spinner.start("attempt 1/5 sending…");
    await framesDrawn(stream, 2);
    spinner.stop("  ✓ attempt 1/5  200  3 ms");
    const text = stream.text();
    const frames = text
      .split("\r\u001b[K")
      .filter((part) => part.endsWith(" attempt 1/5 sending…"));
    expect(frames.length).toBeGreaterThanOrEqual(2);
    expect(text.endsWith("\r\u001b[K  ✓ attempt 1/5  200  3 ms\n")).toBe(true);
  });

  it("prints only the final lines when not animated", () => {
    const stream = terminal(false);
    const spinner = createSpinner(stream, false);
    spinner.start("waiting…");
    spinner.stop("done");
    spinner.stop();
    expect(stream.text()).toBe("done\n");
  });
});

describe("formatDuration", () => {
  it.each([
    [3, "3 ms"],
    [999, "999 ms"],
    [1_000, "1 s"],
    [5_000, "5 s"],
    [1_800, "1.8 s"],
    [30_000, "30 s"],
    [300_000, "5 min"],
    [335_000, "5 min 35 s"],
    [1_800_000, "30 min"],
    [2_135_000, "35 min 35 s"],
  ])("%d ms reads %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe("spinner text", () => {
  it("reads a function on every frame, for a countdown", async () => {
    const stream = terminal(true);
    const spinner = createSpinner(stream, true);
    let left = 3;
    spinner.start(() => `attempt 2/5 in ${left--} s…`);
    await framesDrawn(stream, 2);
    spinner.stop();
    expect(stream.text()).toContain("attempt 2/5 in 3 s…");
    expect(stream.text()).toContain("attempt 2/5 in 2 s…");
  });
});
