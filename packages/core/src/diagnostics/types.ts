/** The part of a `node:diagnostics_channel` TracingChannel the receiver uses. */
export interface TracingChannelLike<TContext extends object> {
  start: { readonly hasSubscribers: boolean };
  end: { readonly hasSubscribers: boolean };
  asyncStart: { readonly hasSubscribers: boolean };
  asyncEnd: { readonly hasSubscribers: boolean };
  error: { readonly hasSubscribers: boolean };
  tracePromise<T>(fn: () => Promise<T>, context: TContext): Promise<T>;
  traceSync<T>(fn: () => T, context: TContext): T;
}

/** Makes the named TracingChannel, or `undefined` where the runtime has none. */
export type TracingChannelFactory = <TContext extends object>(
  name: string,
) => TracingChannelLike<TContext> | undefined;
