// The built package as a user installs it: packed, installed with npm, loaded as ESM and CJS.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const packageDir = resolve(__dirname, "..");
let project: string;

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: project, encoding: "utf8" }).trim();
}

beforeAll(() => {
  project = mkdtempSync(join(tmpdir(), "mappa-core-install-"));
  execFileSync("npm", ["pack", "--pack-destination", project, "--silent"], { cwd: packageDir });
  const tarball = readdirSync(project).find((f) => f.endsWith(".tgz")) as string;
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "user-app", private: true }));
  execFileSync(
    "npm",
    ["install", "--offline", "--no-audit", "--no-fund", "--silent", `./${tarball}`],
    {
      cwd: project,
    },
  );
}, 120_000);

afterAll(() => {
  if (project) rmSync(project, { recursive: true, force: true });
});

const script = (load: string) => `
${load}
const body = JSON.stringify({ id: "evt_pkg", type: "report.completed", createdAt: "2027-01-15T08:00:00.000Z", timestamp: "2027-01-15T08:00:00.000Z", data: { jobId: "j", reportId: "r", status: "succeeded" } });
(async () => {
  const header = await core.signPayload({ payload: body, secret: "whsec_pkg" });
  const event = await core.constructEvent({ payload: Buffer.from(body), headers: { "mappa-signature": header }, secret: "whsec_pkg" });
  let code;
  try { await core.verifySignature({ payload: body + " ", headers: { "mappa-signature": header }, secret: "whsec_pkg" }); }
  catch (e) { code = e instanceof core.MappaWebhookError && e.code; }
  console.log([core.cryptoRuntime, event.type, event.data.reportId, code].join(" "));
})();`;

describe("installed package", () => {
  it("works as CommonJS", () => {
    writeFileSync(
      join(project, "cjs.cjs"),
      script('const core = require("@mappa-webhooks/core");'),
    );
    expect(node(["cjs.cjs"])).toBe("node report.completed r signature_mismatch");
  });

  it("works as ESM", () => {
    writeFileSync(
      join(project, "esm.mjs"),
      script('import * as core from "@mappa-webhooks/core";'),
    );
    expect(node(["esm.mjs"])).toBe("node report.completed r signature_mismatch");
  });

  it("resolves the Web Crypto build under edge conditions", () => {
    for (const condition of ["worker", "edge-light", "workerd", "browser"]) {
      expect(node([`--conditions=${condition}`, "esm.mjs"])).toBe(
        "web report.completed r signature_mismatch",
      );
    }
    expect(node(["--conditions=worker", "cjs.cjs"])).toBe(
      "web report.completed r signature_mismatch",
    );
  });

  it("ships only dist and has no runtime dependencies", () => {
    const manifest = JSON.parse(
      execFileSync(
        process.execPath,
        ["-p", "JSON.stringify(require('@mappa-webhooks/core/package.json'))"],
        {
          cwd: project,
          encoding: "utf8",
        },
      ),
    );
    expect(manifest.dependencies).toBeUndefined();
    expect(readdirSync(join(project, "node_modules/@mappa-webhooks/core")).sort()).toEqual([
      "LICENSE",
      "README.md",
      "dist",
      "package.json",
    ]);
  });
});
