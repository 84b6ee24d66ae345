import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";

/** What {@link startProcess} starts. */
export interface StartProcessOptions {
  /** The arguments: for the default command (Node), the script first. */
  args: readonly string[];
  /** The program. Default: this Node binary (`process.execPath`). */
  command?: string;
  /** The whole environment of the child. Default: this process's environment. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** How the child is named in errors. Default: the last path segment of the first argument. */
  label?: string;
  /** After `kill()`'s signal, how long before SIGKILL follows. Default 3000 ms. */
  killAfterMs?: number;
}

/** A running child process and what it printed, line by line. */
export interface Child {
  process: ChildProcess;
  /** Every line printed, stdout and stderr interleaved as they arrived. */
  output: string[];
  /** The lines printed on stdout only. */
  stdout: string[];
  /** Everything printed on stderr so far. */
  stderr(): string;
  /** Resolves with the first printed line matching `pattern`; rejects on exit or timeout. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /**
   * Resolves with the first line at or after index `from` (of `output`, or of `stdout` with
   * `stream: "stdout"`) that passes `test`; rejects on exit or after `timeoutMs`.
   */
  waitForMatch(
    test: (line: string) => boolean,
    options: { timeoutMs: number; from?: number; stream?: "output" | "stdout" },
  ): Promise<string>;
  /** Resolves with the exit code (null when killed by a signal) once the process exited. */
  exited: Promise<number | null>;
  /** Sends `signal` (default SIGTERM), then SIGKILL if it is still alive; resolves once it exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts a child process with piped output, kept as lines, and bounded waits on what it prints:
 * the one harness every package's process tests use (servers, workers, the CLI, fixtures).
 *
 * @example
 * ```ts
 * const child = startProcess({ args: [script], env: { ...process.env, PORT: "0" } });
 * const [, url] = await child.waitForLine(/^listening on (\S+)$/, 30_000);
 * await child.kill("SIGKILL");
 * ```
 */
export function startProcess(options: StartProcessOptions): Child {
  const { args, command = process.execPath, env = process.env, cwd } = options;
  const label = options.label ?? (args[0] ?? command).split("/").pop() ?? command;
  const killAfterMs = options.killAfterMs ?? 3000;
  const child = spawn(command, [...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
    ...(cwd === undefined ? {} : { cwd }),
  });
  const output: string[] = [];
  const stdout: string[] = [];
  let stderr = "";
  const listeners = new Set<() => void>();
  const wake = () => {
    for (const listener of [...listeners]) listener();
  };
  const splitter = (also?: string[]) => {
    let buffered = "";
    return {
      data(chunk: Buffer) {
        buffered += chunk.toString("utf8");
        const lines = buffered.split("\n");
        buffered = lines.pop() ?? "";
        output.push(...lines);
        also?.push(...lines);
        wake();
      },
      flush() {
        if (buffered === "") return;
        output.push(buffered);
        also?.push(buffered);
        buffered = "";
      },
    };
  };
  const out = splitter(stdout);
  const err = splitter();
  child.stdout?.on("data", out.data);
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
    err.data(chunk);
  });
  // 'close' comes once the pipes ended, so every line printed is in by then; a grandchild
  // holding the pipes open must not keep the exit from being seen, hence the bounded wait.
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve())).then(
    async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([closed, new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
      clearTimeout(timer);
      out.flush();
      err.flush();
      wake();
      return child.exitCode;
    },
  );
  // A program that cannot start (ENOENT) is reported in the output, never as a crash.
  child.on("error", (error) => {
    output.push(`${label}: ${error.message}`);
    wake();
  });
  const hasExited = () => child.exitCode !== null || child.signalCode !== null;

  const waitForMatch: Child["waitForMatch"] = (test, { timeoutMs, from = 0, stream = "output" }) =>
    new Promise((resolve, reject) => {
      const lines = stream === "stdout" ? stdout : output;
      const describe = () => `${output.join("\n")}`;
      const check = () => {
        for (let index = from; index < lines.length; index++) {
          const line = lines[index] as string;
          if (test(line)) {
            done();
            resolve(line);
            return;
          }
        }
        if (hasExited()) {
          done();
          reject(new Error(`${label} exited before printing the line awaited:\n${describe()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `${label} did not print the line awaited within ${timeoutMs} ms:\n${describe()}`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });

  return {
    process: child,
    output,
    stdout,
    stderr: () => stderr,
    exited,
    waitForMatch,
    async waitForLine(pattern, timeoutMs) {
      try {
        const line = await waitForMatch((candidate) => pattern.test(candidate), { timeoutMs });
        return line.match(pattern) as RegExpMatchArray;
      } catch (error) {
        throw new Error(
          String((error as Error).message).replace("the line awaited", String(pattern)),
        );
      }
    },
    async kill(signal = "SIGTERM") {
      if (hasExited()) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** What a process run to its end printed, and how it ended. */
export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a process to its end with `input` on stdin, bounded by `timeoutMs` (default 30 s, then
 * SIGKILL), and resolves with its exit code and output.
 *
 * @example
 * ```ts
 * const { code, stdout } = await runProcess({ args: [cli, "verify", "--json"], input: capture });
 * ```
 */
export async function runProcess(
  options: Omit<StartProcessOptions, "label" | "killAfterMs"> & {
    input?: string;
    timeoutMs?: number;
  },
): Promise<ProcessResult> {
  const { args, command = process.execPath, env = process.env, cwd } = options;
  const child = spawn(command, [...args], {
    env,
    stdio: ["pipe", "pipe", "pipe"],
    ...(cwd === undefined ? {} : { cwd }),
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  // A child that exits without reading its input must not crash the test with EPIPE.
  child.stdin.on("error", () => {});
  child.stdin.end(options.input ?? "");
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
  const [code] = (await once(child, "close")) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}
