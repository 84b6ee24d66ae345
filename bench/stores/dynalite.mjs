// dynalite (an in-memory DynamoDB) for the stores benchmark, in a process of its own so its CPU
// is neither the receiver's nor the load generator's: listens on 127.0.0.1:0, reports
// `{ type: "ready", port }` over IPC, exits when the parent disconnects.
import dynalite from "dynalite";

const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(0, "127.0.0.1", resolve);
});
process.on("disconnect", () => {
  server.closeAllConnections?.();
  server.close(() => process.exit(0));
});
process.send({ type: "ready", port: server.address().port });
