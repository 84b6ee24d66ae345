// The default engine. The web build (and the web test project) replaces this module with
// ./web.ts, see tsup.config.ts and vitest.config.ts.
export { hmacEngine } from "./node.js";
