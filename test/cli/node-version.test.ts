// bin/mailroute.js on a Node.js that cannot run TypeScript sources: a clear message naming the version and what to
// run instead, exit 1 (it was ERR_UNKNOWN_FILE_EXTENSION ".ts" from a static import).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MIN_NODE, nodeVersionProblem } from '../../bin/node-version.js';

const ROOT = new URL('../../', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { engines: { node: string } };

describe('bin/mailroute.js Node.js version check', () => {
  it('needs the version package.json "engines" names', () => {
    expect(pkg.engines.node).toBe(`>=${MIN_NODE}`);
  });

  it.each([
    ['20.20.2', false],
    ['22.12.0', false],
    ['24.10.9', false],
    ['24.11.0', true],
    ['24.21.0', true],
    ['25.0.0', true],
    ['100.1.1', true],
  ])('Node.js %s runs mailroute: %s', (version, ok) => {
    const problem = nodeVersionProblem(version);
    if (ok) expect(problem).toBeUndefined();
    else {
      expect(problem).toContain(`this is Node.js ${version}`);
      expect(problem).toContain('npx mailroute');
    }
  });

  it('runs on the Node.js of this test run (the pinned one)', () => {
    expect(nodeVersionProblem(process.versions.node)).toBeUndefined();
  });

  // The machine's own node (Debian's, outside node_modules/.bin) when it is older: the real failure mode.
  const systemNode = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => {
    if (!existsSync(p)) return false;
    const v = spawnSync(p, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
    return nodeVersionProblem(v) !== undefined;
  });
  it.runIf(systemNode !== undefined)(
    `an older node (${systemNode ?? 'none here'}) gets the message and exit 1`,
    () => {
      const r = spawnSync(systemNode!, ['bin/mailroute.js', 'check', '-f', 'examples/demo'], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`mailroute needs Node.js ${MIN_NODE} or newer`);
      expect(r.stderr).not.toContain('ERR_UNKNOWN_FILE_EXTENSION');
    },
  );
});
