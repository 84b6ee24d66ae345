// The default: node:diagnostics_channel. The web build (and the web test project) replaces this
// module with ./web.ts, see tsup.config.ts and vitest.config.ts.
export { tracingChannel } from "./node.js";
