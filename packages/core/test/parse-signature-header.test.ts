import { describe, expect, it } from "vitest";
import { isMappaWebhookError, parseSignatureHeader, signPayload } from "../src/index.js";

describe("parseSignatureHeader", () => {
  it("reads what signPayload writes", async () => {
    const header = await signPayload({ payload: "{}", secret: "whsec_x", timestamp: 1768651500 });
    const parsed = parseSignatureHeader(header);
    expect(parsed.timestamp).toBe(1768651500);
    expect(parsed.timestampText).toBe("1768651500");
    expect(parsed.signatures).toEqual([header.split("v1=")[1]]);
  });

  it("allows spaces and several v1 entries, and ignores other schemes", () => {
    expect(parseSignatureHeader(" t = 12 , v0=zz, v1=aa ,v1=bb,")).toEqual({
      timestampText: "12",
      timestamp: 12,
      signatures: ["aa", "bb"],
    });
  });

  it.each([
    ["v1=aa", "there is no `t` entry"],
    ["t=12", "there is no `v1` entry"],
    ["t=1.5,v1=aa", "`t` is not a whole number"],
    ["t=1,t=2,v1=aa", "more than once"],
    ["garbage", "not a key=value pair"],
  ])("rejects %j as malformed_signature, saying why", (value, why) => {
    let caught: unknown;
    try {
      parseSignatureHeader(value);
    } catch (error) {
      caught = error;
    }
    expect(isMappaWebhookError(caught) && caught.code).toBe("malformed_signature");
    expect((caught as Error).message).toContain(why);
  });
});
