// Summarises a V8 .cpuprofile: the top frames by self time, and by inclusive time.
//   node profile/summarize.mjs .profiles/CPU.*.cpuprofile [count]
import { readFileSync } from "node:fs";
import { basename } from "node:path";

/** Returns `{ self: [...], total: [...] }`, each `{ frame, percent }`, best first. */
export function summarizeProfile(path, count = 12) {
  const profile = JSON.parse(readFileSync(path, "utf8"));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const hits = new Map();
  for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  const parent = new Map();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parent.set(child, node.id);
  const name = (node) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url ? basename(url.replace(/^file:\/\//, "")) : "";
    return `${functionName || "(anonymous)"}${file ? ` ${file}:${lineNumber + 1}` : ""}`;
  };
  const self = new Map();
  const total = new Map();
  let all = 0;
  for (const [id, n] of hits) {
    const node = byId.get(id);
    all += n;
    self.set(name(node), (self.get(name(node)) ?? 0) + n);
    // Inclusive: count each distinct frame name once per stack.
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const frame = name(byId.get(at));
      if (seen.has(frame)) continue;
      seen.add(frame);
      total.set(frame, (total.get(frame) ?? 0) + n);
    }
  }
  const top = (map) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([frame, n]) => ({ frame, percent: (100 * n) / all }));
  return { samples: all, self: top(self), total: top(total) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const summary = summarizeProfile(process.argv[2], Number(process.argv[3] ?? 15));
  console.log(`${summary.samples} samples\n-- self --`);
  for (const { frame, percent } of summary.self) console.log(`${percent.toFixed(1)}%  ${frame}`);
  console.log("-- inclusive --");
  for (const { frame, percent } of summary.total) console.log(`${percent.toFixed(1)}%  ${frame}`);
}
