// Validate GLB/glTF files with the Khronos glTF validator (npm package `gltf-validator`).
// Usage: node validate_gltf.js <path to the gltf-validator package> <file>...
// Prints one JSON array: per file, the issue counts and the error/warning messages.
"use strict";
const fs = require("fs");
const path = require("path");
// resolve against the working directory: a bare relative path would be looked up from this script's folder
const validator = require(path.resolve(process.argv[2]));

async function main() {
  const results = [];
  for (const file of process.argv.slice(3)) {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), { maxIssues: 100 });
    results.push({
      file: file,
      validatorVersion: report.validatorVersion,
      numErrors: report.issues.numErrors,
      numWarnings: report.issues.numWarnings,
      messages: report.issues.messages.filter((m) => m.severity <= 1),
    });
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((error) => {
  process.stderr.write(String(error) + "\n");
  process.exit(2);
});
