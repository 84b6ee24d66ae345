// Child processes of the benchmarks: servers (http/server.mjs) and the load generator.
import { execFile, fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const SERVER = fileURLToPath(new URL("../http/server.mjs", import.meta.url));
const LOAD = fileURLToPath(new URL("../http/load.mjs", import.meta.url));
const START_TIMEOUT_MS = 20_000;
/** USER_HZ of /proc/<pid>/stat: 100 on Linux everywhere in practice. */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * Starts `http/server.mjs <framework> <variant>` and resolves once it listens:
 * `{ url, pid, rss(), close() }`.
 */
export function startServer(framework, variant, env = {}, execArgv = []) {
  const child = fork(SERVER, [framework, variant], {
    env: { ...process.env, ...env },
    execArgv,
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`${framework}/${variant} did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${framework}/${variant} exited with ${code} before listening`));
    });
    child.on("message", function onReady(message) {
      if (message?.type !== "ready") return;
      clearTimeout(timer);
      child.off("message", onReady);
      child.removeAllListeners("exit");
      resolve({
        framework,
        variant,
        pid: child.pid,
        url: `http://127.0.0.1:${message.port}`,
        /** RSS in bytes, as the server itself reports it. */
        rss: () =>
          new Promise((done) => {
            child.on("message", function onRss(reply) {
              if (reply?.type !== "rss") return;
              child.off("message", onRss);
              done(reply.rss);
            });
            child.send({ type: "rss" });
          }),
        close: () =>
          new Promise((done) => {
            if (child.exitCode !== null) return done();
            const killer = setTimeout(() => child.kill("SIGKILL"), 3000);
            child.once("exit", () => {
              clearTimeout(killer);
              done();
            });
            child.disconnect();
          }),
      });
    });
  });
}

/** Runs one bounded autocannon run in a child process; resolves its JSON result. */
export function runLoad(url, seconds, connections, bodyBytes) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [LOAD, url, String(seconds), String(connections), String(bodyBytes)],
      { timeout: (seconds + 30) * 1000, maxBuffer: 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`load run failed: ${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout.trim().split("\n").pop()));
      },
    );
  });
}

/** VmRSS and VmHWM of a process in bytes, from /proc (Linux); undefined elsewhere. */
export function procMemory(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
    return { rss: kib("VmRSS") * 1024, hwm: kib("VmHWM") * 1024 };
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used, in ms, from /proc (Linux); undefined elsewhere. */
export function procCpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start at the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}
