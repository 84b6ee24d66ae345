// The receiver of the emulator benchmark: reads each body, counts it, answers 200. It verifies
// nothing, so the numbers are the sender's cost. Reports `{type:"ready", port}` over IPC.
import { createServer } from "node:http";

let count = 0;
const server = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    count++;
    res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
  });
});
server.keepAliveTimeout = 30_000;
process.on("message", (message) => {
  if (message?.type === "count") process.send?.({ type: "count", count });
});
server.listen(0, "127.0.0.1", () => process.send?.({ type: "ready", port: server.address().port }));
