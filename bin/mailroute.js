#!/usr/bin/env node
// The `mailroute` command. Node 24 runs the TypeScript sources directly (type stripping), so the version is checked
// before the first TypeScript import (a static import would fail first, with ERR_UNKNOWN_FILE_EXTENSION).
import { nodeVersionProblem } from './node-version.js';

const problem = nodeVersionProblem(process.versions.node);
if (problem !== undefined) {
  process.stderr.write(problem);
  process.exit(1);
}
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
