// Totals for CI's closing line `N passed, N failed`, from vitest's JSON reports and turbo's run
// summary. Counted as failed: every failed test; a test file that failed without a failed test of
// its own (it did not load, or a hook threw and its tests were skipped); every other task that
// failed (build, lint, typecheck, check:package); a test task that failed, or never ran, with no
// failure in its report.
import { existsSync, readdirSync, readFileSync } from "node:fs";

const [reportDir, runsDir, exitStatus] = process.argv.slice(2);
let passed = 0;
let failed = 0;
const failedByPackage = new Map();

for (const file of readdirSync(reportDir).filter((f) => f.endsWith(".json"))) {
  const name = file.replace(/\.json$/, "");
  let report;
  try {
    report = JSON.parse(readFileSync(`${reportDir}/${file}`, "utf8"));
  } catch {
    console.error(`${name}: its test report could not be read (counted as 1 failed)`);
    failed += 1;
    failedByPackage.set(name, 1);
    continue;
  }
  const brokenFiles = report.testResults.filter(
    (r) => r.status === "failed" && !r.assertionResults.some((a) => a.status === "failed"),
  );
  for (const r of brokenFiles) {
    console.error(`${name}: ${r.name} failed to run: ${String(r.message ?? "").split("\n")[0]}`);
  }
  const fileFailures = report.numFailedTests + brokenFiles.length;
  passed += report.numPassedTests;
  failed += fileFailures;
  failedByPackage.set(name, fileFailures);
  console.error(`${name}: ${report.numPassedTests} passed, ${fileFailures} failed`);
}

// Report files are named after the package (the part after the scope).
const reportName = (pkg) => pkg.replace(/^@[^/]+\//, "");
const summaries = existsSync(runsDir)
  ? readdirSync(runsDir).filter((f) => f.endsWith(".json"))
  : [];
for (const file of summaries) {
  const summary = JSON.parse(readFileSync(`${runsDir}/${file}`, "utf8"));
  for (const task of summary.tasks ?? []) {
    const code = task.execution?.exitCode;
    if (code === 0) continue;
    const [pkg, name] = [task.package, task.task];
    const what = code === undefined || code === null ? "did not run" : `exited with ${code}`;
    if (name === "test" && (failedByPackage.get(reportName(pkg)) ?? 0) > 0) continue;
    console.error(`${pkg}#${name} ${what} (counted as 1 failed)`);
    failed += 1;
  }
}
if (summaries.length === 0 && exitStatus !== "0") {
  console.error("no turbo run summary: counting the failed test command as 1 failed");
  failed += failed === 0 ? 1 : 0;
}
if (exitStatus !== "0") console.error(`pnpm test exited with ${exitStatus}`);
console.log(`${passed} passed, ${failed} failed`);
