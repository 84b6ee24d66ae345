import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLI, run } from "./helpers.js";

const { version } = JSON.parse(
  readFileSync(new URL("../package.json", import.meta.url), "utf8"),
) as {
  version: string;
};

describe("mappa-webhooks", () => {
  it("is an executable ESM script with a shebang", () => {
    expect(readFileSync(CLI, "utf8").startsWith("#!/usr/bin/env node\n")).toBe(true);
  });

  it("prints the top-level help with --help, -h and help", async () => {
    for (const flag of ["--help", "-h", "help"]) {
      const result = await run([flag]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain("Usage\n  npx @mappa-webhooks/cli <command> [options]");
      for (const command of ["trigger <event-type>", "listen", "verify", "doctor <url>"])
        expect(result.stdout).toContain(command);
    }
  });

  it("prints the help and exits 2 without a command", async () => {
    const result = await run([]);
    expect(result.code).toBe(2);
    expect(result.stdout).toContain("Commands");
  });

  it("prints its version", async () => {
    const result = await run(["--version"]);
    expect(result).toMatchObject({ code: 0, stdout: `${version}\n` });
  });

  it.each(["trigger", "listen", "verify", "doctor"])(
    "has --help for %s (and `help <command>`)",
    async (command) => {
      const result = await run([command, "--help"]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`npx @mappa-webhooks/cli ${command}`);
      expect(result.stdout).toContain("--secret <secret>");
      expect(result.stdout).toContain("--json");
      expect((await run(["help", command])).stdout).toBe(result.stdout);
    },
  );

  it("rejects an unknown command with exit 2", async () => {
    const result = await run(["send"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'error: unknown command "send"; commands: trigger, listen, verify, doctor',
    );
    expect(result.stderr).toContain("Run `npx @mappa-webhooks/cli --help` for usage.");
  });

  it("uses colour only when asked on a pipe, and never with NO_COLOR", async () => {
    const args = ["trigger", "nope", "--url", "http://127.0.0.1:9/x"];
    const plain = await run(args);
    expect(plain.stderr).not.toContain("\u001b[");
    const forced = await run(args, { env: { FORCE_COLOR: "1" } });
    expect(forced.stderr).toContain("\u001b[31merror:\u001b[39m");
    const disabled = await run(args, { env: { FORCE_COLOR: "1", NO_COLOR: "1" } });
    expect(disabled.stderr).not.toContain("\u001b[");
  });
});

describe("the name it is run by", () => {
  it("never tells anyone to run the unscoped `npx mappa-webhooks`, which is not this package", async () => {
    for (const args of [
      ["--help"],
      ...["trigger", "listen", "verify", "doctor"].map((c) => [c, "--help"]),
    ]) {
      const result = await run(args);
      expect(result.code).toBe(0);
      expect(result.stdout).not.toMatch(
        /^\s*(?:npx )?mappa-webhooks (?:trigger|listen|verify|doctor)\b/m,
      );
      expect(result.stdout).toContain("npx @mappa-webhooks/cli");
    }
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    expect(readme).not.toMatch(/npx mappa-webhooks(?! ?…)/);
    expect(readme).not.toMatch(/^open http/m);
  });
});
