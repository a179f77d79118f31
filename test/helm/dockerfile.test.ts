// The container image cannot be built on this machine (no Docker engine), so this checks what can be checked
// without one: the Dockerfile's shape (Node 24 base, non-root numeric USER, production deps only, exec-form
// ENTRYPOINT on bin/mailroute.js, patch-package pinned like package.json), that everything it COPYs exists and is
// not excluded by .dockerignore, and then the image's file set in a temp dir: `npm ci --omit=dev` + the patches +
// `node bin/mailroute.js check` and `render` on the examples, with no devDependency installed.
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, run } from './tools.ts';

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Dockerfile -> instructions (continuations joined, comments and parser directives dropped). */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    const m = /^(\w+)\s+(.*)$/s.exec(full);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ op, args: m[2]!, stage });
  }
  return out;
}

const dockerfile = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
const dockerignore = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** .dockerignore patterns as the Docker builder reads them (the subset we use: dirs, **, *). */
function ignored(path: string): boolean {
  return dockerignore.some((pat) => {
    const re = new RegExp(
      `^${pat
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\//g, '@@')
        .replace(/\*/g, '[^/]*')
        .replace(/@@/g, '(?:.*/)?')}(?:/.*)?$`,
    );
    return re.test(path);
  });
}

const lastStage = Math.max(...dockerfile.map((i) => i.stage));
const final = dockerfile.filter((i) => i.stage === lastStage);
/** Sources the final stage copies from the build context (not --from another stage). */
const contextCopies = dockerfile
  .filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
  .flatMap((i) => {
    const parts = i.args.split(/\s+/).filter((p) => !p.startsWith('--'));
    return parts.slice(0, -1);
  });

describe('Dockerfile', () => {
  it('builds on node:24-bookworm-slim in two stages', () => {
    const arg = dockerfile.find((i) => i.op === 'ARG' && i.args.startsWith('NODE_IMAGE='));
    expect(arg?.args).toBe('NODE_IMAGE=node:24-bookworm-slim');
    const froms = dockerfile.filter((i) => i.op === 'FROM').map((i) => i.args);
    expect(froms).toEqual(['${NODE_IMAGE} AS deps', '${NODE_IMAGE}']);
    expect(pkg.devDependencies.node).toMatch(/^24\./);
  });

  it('installs production dependencies only, with the patches applied by the pinned patch-package', () => {
    const install = dockerfile.find((i) => i.op === 'RUN' && i.args.includes('npm ci'));
    expect(install?.args).toContain('npm ci --omit=dev');
    const pinned = /patch-package@([\d.]+)/.exec(install?.args ?? '')?.[1];
    expect(pinned, 'patch-package version in the Dockerfile').toBe(pkg.devDependencies['patch-package']);
    expect(final.some((i) => i.op === 'RUN' && i.args.includes('npm '))).toBe(false);
  });

  it('runs as a numeric non-root user with the exec-form entrypoint on bin/mailroute.js', () => {
    const users = final.filter((i) => i.op === 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!.args;
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user.split(':')[0])).toBeGreaterThan(0);
    const entry = final.find((i) => i.op === 'ENTRYPOINT');
    expect(JSON.parse(entry!.args)).toEqual(['node', '/app/bin/mailroute.js']);
  });

  it('copies only files that exist and that .dockerignore lets into the context', () => {
    expect(contextCopies.length).toBeGreaterThan(5);
    for (const src of contextCopies) {
      expect(existsSync(join(REPO_ROOT, src)), src).toBe(true);
      expect(ignored(src), `${src} is excluded by .dockerignore`).toBe(false);
    }
    // every runtime source folder the CLI imports is in the image
    for (const dir of ['bin', 'cli', 'routing', 'lib', 'contract', 'relay', 'operator'])
      expect(contextCopies).toContain(dir);
    expect(ignored('relay/spool/spool.test.ts')).toBe(true);
    expect(ignored('node_modules')).toBe(true);
  });
});

describe("the image's file set, installed like the Dockerfile does", () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailroute-image-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('npm ci --omit=dev, patches, then `mailroute check` and `render` work on the examples', async () => {
    for (const src of contextCopies) {
      cpSync(join(REPO_ROOT, src), join(dir, src), {
        recursive: true,
        filter: (from) => !ignored(relative(REPO_ROOT, from)),
      });
    }
    expect(
      readdirSync(join(dir, 'relay'), { recursive: true }).some((f) => String(f).endsWith('.test.ts')),
    ).toBe(false);
    const ci = await run(
      'npm',
      ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
      {
        cwd: dir,
        timeoutMs: 180_000,
      },
    );
    expect(ci.code, `npm ci --omit=dev failed (the image build would too):\n${ci.stderr.slice(-1500)}`).toBe(
      0,
    );
    // Packages only devDependencies need (the lock marks them dev: true), e.g. the `node` binary package, vitest.
    const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const devOnly = Object.entries(lock.packages)
      .filter(
        ([path, p]) => p.dev === true && path.startsWith('node_modules/') && !path.includes('/node_modules/'),
      )
      .map(([path]) => path);
    expect(devOnly).toEqual(
      expect.arrayContaining(['node_modules/node', 'node_modules/vitest', 'node_modules/typescript']),
    );
    expect(devOnly.filter((path) => existsSync(join(dir, path)))).toEqual([]);
    for (const dep of Object.keys(pkg.dependencies))
      expect(existsSync(join(dir, 'node_modules', dep)), dep).toBe(true);
    const patch = await run(join(REPO_ROOT, 'node_modules', '.bin', 'patch-package'), ['--error-on-fail'], {
      cwd: dir,
    });
    expect(patch.code, patch.stderr).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/smtp-server/dist/cjs/smtp-connection.js'), 'utf8')).toContain(
      'greetingDelay',
    );

    // Each example folder is one scenario (they declare the same domain), so each is checked on its own.
    const scenarios = readdirSync(join(dir, 'examples'), { withFileTypes: true }).filter((d) =>
      d.isDirectory(),
    );
    expect(scenarios.length).toBeGreaterThan(0);
    for (const d of scenarios) {
      const check = await run(process.execPath, ['bin/mailroute.js', 'check', '-f', `examples/${d.name}`], {
        cwd: dir,
      });
      expect(check.code, `check ${d.name}: ${check.stdout}${check.stderr}`).toBe(0);
    }
    const render = await run(process.execPath, ['bin/mailroute.js', 'render', '-f', 'examples/demo'], {
      cwd: dir,
    });
    expect(render.code, render.stderr).toBe(0);
    expect(Object.keys((JSON.parse(render.stdout) as { domains: object }).domains)).toContain('example.com');
    const relayHelp = await run(process.execPath, ['bin/mailroute.js', 'relay', '--help'], { cwd: dir });
    expect(relayHelp.code, relayHelp.stderr).toBe(0);
    expect(relayHelp.stdout).toContain('--configmap');
    const operatorHelp = await run(process.execPath, ['bin/mailroute.js', 'operator', '--help'], {
      cwd: dir,
    });
    expect(operatorHelp.code, operatorHelp.stderr).toBe(0);
  }, 240_000);
});
