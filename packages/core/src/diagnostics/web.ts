import type { TracingChannelFactory, TracingChannelLike } from "./types.js";

interface DiagnosticsModule {
  tracingChannel?: (name: string) => unknown;
}

/**
 * Edge and other runtimes: `node:diagnostics_channel` only where the runtime offers it through
 * `process.getBuiltinModule` (Bun, Deno, workerd with `nodejs_compat`, Node in a browser-condition
 * bundle); never a static `node:` import, so edge bundles build without it.
 */
export const tracingChannel: TracingChannelFactory = <TContext extends object>(name: string) => {
  let diagnostics: DiagnosticsModule | undefined;
  try {
    const get = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process
      ?.getBuiltinModule;
    diagnostics =
      typeof get === "function"
        ? (get("node:diagnostics_channel") as DiagnosticsModule | undefined)
        : undefined;
  } catch {
    diagnostics = undefined;
  }
  return typeof diagnostics?.tracingChannel === "function"
    ? (diagnostics.tracingChannel(name) as TracingChannelLike<TContext>)
    : undefined;
};
