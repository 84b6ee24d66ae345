// A focused loop over one micro contender, for `node --cpu-prof`:
//   node --cpu-prof --cpu-prof-dir=.profiles profile/focus.mjs verifyNode 1024 3000 [module]
// Arguments: contender id, body size in bytes, duration in ms (bounded), and optionally the
// module that builds it (default micro/contenders.mjs; pass another to profile a candidate fix).
import { pathToFileURL } from "node:url";
import { signedInputFor } from "../micro/contenders.mjs";

const [id = "verifyNode", sizeText = "1024", msText = "3000", modulePath] = process.argv.slice(2);
const source = modulePath
  ? await import(pathToFileURL(modulePath).href)
  : await import("../micro/contenders.mjs");
const signed = await signedInputFor(Number(sizeText));
const contender = await source.createContender(id, source.inputFrom(signed));
const end = performance.now() + Number(msText);
let calls = 0;
while (performance.now() < end) {
  for (let i = 0; i < 1000; i++) {
    if (contender.async) await contender.run();
    else contender.run();
  }
  calls += 1000;
}
process.stdout.write(
  `${id} ${sizeText} B: ${((Number(msText) * 1e6) / calls).toFixed(0)} ns per call\n`,
);
