// Frame-by-frame difference of two sets of V8 CPU profiles (e.g. an adapter's server and the
// hand-written optimal route's, each under the same fixed request count), per request:
//   node profile/diff.mjs <a.json> <b.json> [top]
// Each .json names its profiles and what they covered:
//   { "label": "adapter", "profiles": ["….cpuprofile"], "requests": 20000, "cpuMs": 5123 }
// A frame's share of the non-idle samples times the server's CPU time per request (from /proc,
// `cpuMs`) gives its µs per request; without `cpuMs`, the samples' own time deltas are used.
import { readFileSync } from "node:fs";
import { basename } from "node:path";

const IDLE = "(idle)";

/** A short, stable name for a frame: function, then package (or node internal) and file:line. */
export function frameName(callFrame) {
  const { functionName, url, lineNumber } = callFrame;
  const fn = functionName || "(anonymous)";
  if (!url) return fn;
  const path = url.replace(/^file:\/\//, "");
  let where;
  const nm = path.lastIndexOf("/node_modules/");
  if (nm !== -1) {
    const parts = path.slice(nm + "/node_modules/".length).split("/");
    const pkg = parts[0]?.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
    where = `${pkg}/${basename(path)}`;
  } else if (path.includes("/packages/")) {
    const rest = path.slice(path.lastIndexOf("/packages/") + "/packages/".length).split("/");
    where = `@mappa-webhooks/${rest[0]}/${rest
      .slice(1)
      .join("/")
      .replace(/^dist\//, "")}`;
  } else if (path.startsWith("node:")) where = path;
  else where = basename(path);
  return `${fn} ${where}:${lineNumber + 1}`;
}

/** Where a frame comes from, for the per-package summary. */
function ownerOf(name) {
  const located = /^.* (\S+):\d+$/.exec(name);
  // V8's own entries ("(garbage collector)", "(program)") and native code (e.g. `writev`).
  if (located === null) return name.startsWith("(") ? name : "(native)";
  const where = located[1];
  if (where.startsWith("node:")) return "node internals";
  if (where.startsWith("@")) return where.split("/").slice(0, 2).join("/");
  return where.includes("/") ? where.split("/")[0] : where;
}

/** Sample counts per frame (self and inclusive) of one profile, added into `into`. */
export function addProfile(path, into) {
  const profile = JSON.parse(readFileSync(path, "utf8"));
  const parent = new Map();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parent.set(child, node.id);
  const names = new Map(profile.nodes.map((node) => [node.id, frameName(node.callFrame)]));
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    const name = names.get(id);
    // The time a sample stands for is the gap to the next one (as DevTools counts it).
    const us = Math.max(0, deltas[i + 1] ?? deltas[i] ?? 0);
    into.samples += 1;
    into.us += us;
    if (name === IDLE) {
      into.idle += 1;
      continue;
    }
    into.self.set(name, (into.self.get(name) ?? 0) + 1);
    const owner = ownerOf(name);
    into.owners.set(owner, (into.owners.get(owner) ?? 0) + 1);
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const frame = names.get(at);
      if (frame === "(root)" || seen.has(frame)) continue;
      seen.add(frame);
      into.total.set(frame, (into.total.get(frame) ?? 0) + 1);
    }
  }
  return into;
}

/** Loads a run description and its profiles: counts plus µs per request per sample. */
export function loadRun(meta) {
  const run = { samples: 0, idle: 0, us: 0, self: new Map(), total: new Map(), owners: new Map() };
  for (const path of meta.profiles) addProfile(path, run);
  const busy = run.samples - run.idle;
  const busyUs =
    meta.cpuMs !== undefined ? meta.cpuMs * 1000 : (run.us * busy) / Math.max(1, run.samples);
  return {
    ...run,
    label: meta.label,
    requests: meta.requests,
    usPerSample: busyUs / busy / meta.requests,
    busy,
  };
}

const fmt = (value) => value.toFixed(1);
const signed = (value) => `${value >= 0 ? "+" : ""}${value.toFixed(1)}`;

/** Markdown tables: the frames whose µs per request differ most, self and inclusive, and per package. */
export function diffRuns(a, b, top = 25) {
  const lines = [];
  const per = (run, map, frame) => (map.get(frame) ?? 0) * run.usPerSample;
  lines.push(
    `${a.label}: ${a.requests} requests, ${a.busy} busy samples, ${fmt(a.busy * a.usPerSample)} µs CPU per request; ` +
      `${b.label}: ${b.requests} requests, ${b.busy} busy samples, ${fmt(b.busy * b.usPerSample)} µs CPU per request.`,
    "",
  );
  for (const [title, key] of [
    ["self time", "self"],
    ["inclusive time", "total"],
    ["self time by package", "owners"],
  ]) {
    const frames = new Set([...a[key].keys(), ...b[key].keys()]);
    const rows = [...frames]
      .map((frame) => {
        const x = per(a, a[key], frame);
        const y = per(b, b[key], frame);
        return { frame, x, y, d: x - y };
      })
      .sort((p, q) => Math.abs(q.d) - Math.abs(p.d))
      .slice(0, key === "owners" ? frames.size : top);
    lines.push(`#### ${title}, µs per request`, "");
    lines.push(`| frame | ${a.label} | ${b.label} | Δ |`, "| --- | ---: | ---: | ---: |");
    for (const { frame, x, y, d } of rows)
      lines.push(`| \`${frame}\` | ${fmt(x)} | ${fmt(y)} | ${signed(d)} |`);
    lines.push("");
  }
  return lines.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [aPath, bPath, topText] = process.argv.slice(2);
  const a = loadRun(JSON.parse(readFileSync(aPath, "utf8")));
  const b = loadRun(JSON.parse(readFileSync(bPath, "utf8")));
  process.stdout.write(`${diffRuns(a, b, Number(topText ?? 25))}\n`);
}
