/**
 * Resolves after `ms` milliseconds. For pacing only: tests wait for conditions with
 * {@link waitFor}, never for a guessed duration.
 *
 * @example
 * ```ts
 * await sleep(50);
 * ```
 */
export const sleep = (ms: number): Promise<void> =>
  new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Waits until `check` is true, polling every `everyMs`, at most `timeoutMs` (then throws).
 *
 * @example
 * ```ts
 * await waitFor(() => received.length === 3, 20_000);
 * ```
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}
