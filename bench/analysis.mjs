// What BENCHMARKS.md says about a missed target: the cause found by profiling during
// development and the fix it calls for. Keyed by target id prefix; each takes the full id.
export const ANALYSIS = {
  verify: () => "Not analysed yet.",
  construct: () => "Not analysed yet.",
  web: () => "Not analysed yet.",
  http: () => "Not analysed yet.",
  memory: () => "Not analysed yet.",
};
