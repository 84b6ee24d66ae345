import diagnostics from "node:diagnostics_channel";
import type { TracingChannelFactory, TracingChannelLike } from "./types.js";

/** Node: `node:diagnostics_channel`, imported statically (the node build only). */
export const tracingChannel: TracingChannelFactory = <TContext extends object>(name: string) =>
  typeof diagnostics.tracingChannel === "function"
    ? (diagnostics.tracingChannel(name) as unknown as TracingChannelLike<TContext>)
    : undefined;
