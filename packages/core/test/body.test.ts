import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { isMappaWebhookError, readBodyWithLimit } from "../src/index.js";

describe("readBodyWithLimit", () => {
  it("reads a Node stream to the end within the limit", async () => {
    const body = await readBodyWithLimit(Readable.from([Buffer.from("ab"), Buffer.from("cd")]), 4);
    expect(new TextDecoder().decode(body)).toBe("abcd");
  });

  it("stops at the limit without destroying a Node stream, so a 413 can still be written", async () => {
    let produced = 0;
    const stream = new Readable({
      read() {
        produced++;
        this.push(produced > 1000 ? null : Buffer.alloc(1024));
      },
    });
    const error = await readBodyWithLimit(stream, 4096).catch((e: unknown) => e);
    expect(isMappaWebhookError(error) && error.code).toBe("payload_too_large");
    expect(stream.destroyed).toBe(false);
    expect(produced).toBeLessThan(50);
    stream.destroy();
  });

  it("reads strings and empty bodies", async () => {
    expect(await readBodyWithLimit(Readable.from(["é"]), 10)).toEqual(
      new TextEncoder().encode("é"),
    );
    expect((await readBodyWithLimit(null, 10)).byteLength).toBe(0);
  });

  it("refuses a stream that was already read instead of waiting forever", async () => {
    const stream = Readable.from([Buffer.from("{}")]);
    for await (const _ of stream) {
      // a body parser consumed it
    }
    const error = await readBodyWithLimit(stream, 10).catch((e: unknown) => e);
    expect(isMappaWebhookError(error) && error.code).toBe("body_already_parsed");
  });

  it("rejects when the stream closes before its end", async () => {
    const stream = new Readable({ read() {} });
    stream.push(Buffer.from("partial"));
    const reading = readBodyWithLimit(stream, 100);
    setImmediate(() => stream.destroy());
    await expect(reading).rejects.toMatchObject({ code: "request_aborted" });
  });

  it("rejects at once with request_aborted when the stream was already destroyed", async () => {
    const stream = new Readable({ read() {} });
    stream.destroy();
    await expect(readBodyWithLimit(stream, 10, { timeoutMs: 60_000 })).rejects.toMatchObject({
      code: "request_aborted",
    });
  });
});
