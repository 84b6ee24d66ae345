// A benchmark server (`http/server.mjs <framework> <variant>`) whose CPU profile covers one
// window the parent chooses, so start-up and warm-up stay out of it:
//   fork("profile/profiled-server.mjs", [framework, variant])
//   send { type: "profile-start", intervalUs }  → replies { type: "profile-started" }
//   send { type: "profile-stop", path }         → writes the .cpuprofile, replies { type: "profile-written" }
// The profile is V8's sampling CPU profiler, the one `node --cpu-prof` runs, started and
// stopped through `node:inspector` instead of at process start and exit.
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";

const session = new Session();
session.connect();
const post = (method, params = {}) =>
  new Promise((resolve, reject) =>
    session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))),
  );

process.on("message", async (message) => {
  if (message?.type === "profile-start") {
    await post("Profiler.enable");
    await post("Profiler.setSamplingInterval", { interval: message.intervalUs ?? 1000 });
    await post("Profiler.start");
    process.send({ type: "profile-started" });
  } else if (message?.type === "profile-stop") {
    const { profile } = await post("Profiler.stop");
    writeFileSync(message.path, JSON.stringify(profile));
    process.send({ type: "profile-written", path: message.path });
  }
});

await import("../http/server.mjs");
