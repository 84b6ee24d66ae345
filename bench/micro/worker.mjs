// One contender in its own thread. The main thread sends `{ n }` and gets back the time per call
// of n calls in nanoseconds, so it decides the order of samples while each contender's code is
// optimised for its own calls only.
import { parentPort, workerData } from "node:worker_threads";

const { modulePath, id, signed } = workerData;
const { createContender, inputFrom } = await import(modulePath);
const contender = await createContender(id, inputFrom(signed));
const { run } = contender;

let sink = 0;

async function timeBatch(n) {
  if (contender.async) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (await run()) sink++;
    return Number(process.hrtime.bigint() - start) / n;
  }
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (run()) sink++;
  return Number(process.hrtime.bigint() - start) / n;
}

parentPort.on("message", async ({ n }) => {
  try {
    parentPort.postMessage({ ns: await timeBatch(n), sink });
  } catch (error) {
    parentPort.postMessage({ error: String(error?.stack ?? error) });
  }
});
