import type { Writable } from "node:stream";

/** Colour helpers; each is the identity when colour is off. */
export interface Style {
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  cyan(text: string): string;
}

type Stream = Writable & { isTTY?: boolean };

/**
 * Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
 * FORCE_COLOR turns it on for a pipe (used by our tests and some CI logs).
 */
export function colorEnabled(stream: Stream, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "" && env.FORCE_COLOR !== "0")
    return true;
  return stream.isTTY === true;
}

const wrap =
  (enabled: boolean, open: number, close: number) =>
  (text: string): string =>
    enabled ? `\u001b[${open}m${text}\u001b[${close}m` : text;

export function createStyle(enabled: boolean): Style {
  return {
    bold: wrap(enabled, 1, 22),
    dim: wrap(enabled, 2, 22),
    red: wrap(enabled, 31, 39),
    green: wrap(enabled, 32, 39),
    yellow: wrap(enabled, 33, 39),
    cyan: wrap(enabled, 36, 39),
  };
}

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/** A one-line spinner on a terminal; elsewhere it stays silent and only final lines print. */
export interface Spinner {
  /** Shows `text`; a function is read again on every frame (for a countdown). */
  start(text: string | (() => string)): void;
  /** Stops the spinner, clears its line and prints `line` (if given) in its place. */
  stop(line?: string): void;
}

export function createSpinner(stream: Stream, animate: boolean): Spinner {
  let timer: ReturnType<typeof setInterval> | undefined;
  let frame = 0;
  let text: string | (() => string) = "";
  const draw = () => {
    const shown = typeof text === "function" ? text() : text;
    stream.write(`\r\u001b[K${FRAMES[frame % FRAMES.length]} ${shown}`);
    frame++;
  };
  return {
    start(next) {
      text = next;
      if (!animate) return;
      if (timer === undefined) {
        timer = setInterval(draw, 80);
        timer.unref();
      }
      draw();
    },
    stop(line) {
      if (timer !== undefined) {
        clearInterval(timer);
        timer = undefined;
        stream.write("\r\u001b[K");
      }
      if (line !== undefined) stream.write(`${line}\n`);
    },
  };
}

/** `850 ms`, `1.2 s`, `5 min`, `5 min 35 s`: durations as people read them. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) {
    const seconds = Math.round(ms / 100) / 10;
    return `${seconds} s`;
  }
  const totalSeconds = Math.round(ms / 1_000);
  const minutes = Math.floor(totalSeconds / 60);
  const seconds = totalSeconds % 60;
  return seconds === 0 ? `${minutes} min` : `${minutes} min ${seconds} s`;
}

/**
 * C0 and C1 control characters (ESC, CSI, BEL, backspace, CR, LF…), DEL, and the Unicode
 * bidirectional overrides: what a payload could use to rewrite or hide what a terminal shows.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const UNSAFE_TEST = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

const escapeChar = (char: string): string => {
  const code = char.charCodeAt(0);
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u${code.toString(16).padStart(4, "0")}`;
};

/**
 * Text from a delivery (or an app's answer), made safe to print on a terminal: every control
 * character shows as `\x1b`, `\x0a`, `\u202e`…, so a payload can neither move the cursor,
 * change colours, clear the screen nor fake a line of output.
 */
export function safe(text: string): string {
  return UNSAFE_TEST.test(text) ? text.replace(UNSAFE, escapeChar) : text;
}

// What JSON.stringify leaves raw that a terminal acts on.
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `JSON.stringify`, with the characters it leaves raw that a terminal acts on (DEL, C1 controls
 * such as CSI, bidirectional overrides) written as `\uXXXX`: the same JSON value, safe to print.
 */
export function jsonText(value: unknown, space?: number): string {
  return JSON.stringify(value, null, space).replace(
    JSON_UNSAFE,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
