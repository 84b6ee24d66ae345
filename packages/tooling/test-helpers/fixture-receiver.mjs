// What the stores' receiver fixtures (test/fixtures/receiver.mjs of MySQL, SQLite, DynamoDB)
// share, in plain JavaScript: they run as `node <fixture>.mjs`, without the test's transform, so
// they import this file by its path (../../../tooling/test-helpers/fixture-receiver.mjs).

/** Never resolves in a test's lifetime: a stalled handler, until the test kills the process. */
export const hang = () => new Promise((resolve) => setTimeout(resolve, 10 * 60_000));

/**
 * The fixtures' handler: an event with `data.failFirst` throws on its very first attempt across
 * all processes (`firstAttempt(key)` decides, on the store's side); otherwise it writes its
 * effect with `write(key, instance)`; an event whose `data.stallOn` names this instance then
 * prints `wrote <key>` and hangs until the test kills the process.
 *
 * @param {{ instance: string, firstAttempt(key: string): boolean | Promise<boolean> }} options
 * @returns {(event: { idempotencyKey: string, data?: Record<string, unknown> }, write: (key: string, instance: string) => unknown) => Promise<void>}
 */
export function effectHandler({ instance, firstAttempt }) {
  return async (event, write) => {
    const key = event.idempotencyKey;
    if (event.data?.failFirst === true && (await firstAttempt(key))) {
      throw new Error(`transient failure on the first attempt of ${key}`);
    }
    await write(key, instance);
    if (event.data?.stallOn === instance) {
      console.log(`wrote ${key}`);
      await hang();
    }
  };
}

/**
 * Listens on 127.0.0.1:$PORT (0 by default), prints `listening on http://127.0.0.1:<port>` (what
 * the tests' webhookUrlOf waits for), and on SIGTERM closes the server, then `close()`, then exits.
 *
 * @param {import("node:http").Server} server
 * @param {() => unknown} [close]
 */
export function serveFixture(server, close = () => {}) {
  server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
    console.log(`listening on http://127.0.0.1:${server.address().port}`);
  });
  process.on("SIGTERM", () => {
    server.close();
    server.closeAllConnections();
    Promise.resolve()
      .then(close)
      .finally(() => process.exit(0));
  });
}
