// Starts two instances of server.js on PORT and PORT+1 (default 3000 and 3001), sharing one
// Redis, as a load balancer would see them. Ctrl-C stops both.
import { spawn } from "node:child_process";

const base = Number(process.env.PORT ?? 3000);
const ports = base === 0 ? [0, 0] : [base, base + 1];
const children = ["a", "b"].map((name, index) => {
  const child = spawn(process.execPath, [new URL("./server.js", import.meta.url).pathname], {
    env: { ...process.env, PORT: String(ports[index]), INSTANCE: `instance ${name}` },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const prefix = (stream, out) => {
    let rest = "";
    stream.on("data", (chunk) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) out.write(`${name} | ${line}\n`);
    });
  };
  prefix(child.stdout, process.stdout);
  prefix(child.stderr, process.stderr);
  child.on("exit", (code) => {
    console.log(`${name} | exited (${code})`);
    stopAll();
  });
  return child;
});

function stopAll() {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
}
process.on("SIGINT", stopAll);
process.on("SIGTERM", stopAll);
