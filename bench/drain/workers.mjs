// Worker processes of the drain benchmark: each is `postgres/worker.mjs` (createInboxWorker,
// one effect row per event written in the event's transaction), forked with its own pool.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";

const WORKER = fileURLToPath(new URL("../postgres/worker.mjs", import.meta.url));
const START_TIMEOUT_MS = 30_000;
const STATS_TIMEOUT_MS = 10_000;
const CLOSE_TIMEOUT_MS = 15_000;

/** Forks one worker process; resolves once its LISTEN is set up: `{ pid, stats(), close() }`. */
function startWorker(env) {
  const child = fork(WORKER, [], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`a drain worker did not start within ${START_TIMEOUT_MS} ms`));
    }, START_TIMEOUT_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`a drain worker exited with ${code} before it was ready`));
    });
    child.on("message", function onReady(message) {
      if (message?.type !== "ready") return;
      clearTimeout(timer);
      child.off("message", onReady);
      child.removeAllListeners("exit");
      resolve({
        pid: child.pid,
        /** Events this process has handled so far (its `worker.stats.done`). */
        stats: () =>
          new Promise((done) => {
            if (!child.connected) return done(Number.NaN);
            const giveUp = setTimeout(() => done(Number.NaN), STATS_TIMEOUT_MS);
            child.on("message", function onStats(answer) {
              if (answer?.type !== "stats") return;
              clearTimeout(giveUp);
              child.off("message", onStats);
              done(answer.done);
            });
            child.send({ type: "stats" });
          }),
        /** Lets the worker finish what it runs (`worker.close()`), then waits for its exit. */
        close: () =>
          new Promise((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            const killer = setTimeout(() => child.kill("SIGKILL"), CLOSE_TIMEOUT_MS);
            child.once("exit", () => {
              clearTimeout(killer);
              done();
            });
            if (child.connected) child.disconnect();
            else child.kill();
          }),
      });
    });
  });
}

/**
 * Starts `count` worker processes on `schema` at once (each with `concurrency` slots taking
 * `batchSize` events per transaction); resolves when every one listens. On a failure the
 * started ones are closed again.
 */
export async function startWorkers({ count, schema, databaseUrl, concurrency, batchSize }) {
  const env = {
    DATABASE_URL: databaseUrl,
    BENCH_SCHEMA: schema,
    BENCH_WORKER_CONCURRENCY: String(concurrency),
    BENCH_WORKER_BATCH: String(batchSize),
  };
  const results = await Promise.allSettled(Array.from({ length: count }, () => startWorker(env)));
  const started = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
  const failed = results.find((r) => r.status === "rejected");
  if (failed !== undefined) {
    await Promise.all(started.map((worker) => worker.close()));
    throw failed.reason;
  }
  return {
    workers: started,
    stats: () => Promise.all(started.map((worker) => worker.stats())),
    close: () => Promise.all(started.map((worker) => worker.close())),
  };
}
