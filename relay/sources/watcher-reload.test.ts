// When a file-based source loads again: an emptied manifest file keeps the last good table (kubectl's `>` empties the
// file for about a second), a chmod is seen, a load that failed for a transient reason is retried, a file being written
// is loaded once it stays the same.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/wait.ts';
import { loadManifestsDir, createManifestsSource } from './manifests.ts';
import { createPolledSource, type LoadOutcome } from './polled.ts';
import type { RoutingSource } from './types.ts';
import { fingerprint, nextRetryPolls, watchPath, type Watcher } from './watcher.ts';

const root = mkdtempSync(join(tmpdir(), 'mailroute-reload-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const open: (RoutingSource | Watcher)[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

const domain = (d: string, port = 25): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: ${d.replaceAll('.', '-')}}
spec:
  domain: ${d}
  servers: [{name: main, host: 127.0.0.1, port: ${port}, tls: None}]
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: ${d.replaceAll('.', '-')}}
spec: {domainRef: {name: ${d.replaceAll('.', '-')}}, mode: Direct, primary: main}
`;

/** A logger whose error lines are kept, to count them. */
function capturingLogger(): { logger: pino.Logger; errors: string[] } {
  const errors: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      const line = JSON.parse(chunk.toString()) as { level: number; msg: string };
      if (line.level >= 50) errors.push(line.msg);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), errors };
}

describe('an emptied manifest file (`kubectl get ... -o yaml > f.yaml` empties it before kubectl writes)', () => {
  it('keeps the last good table with an error naming the file, and loads the file once it is written', async () => {
    const dir = mkdtempSync(join(root, 'empty-'));
    writeFileSync(join(dir, 'a.yaml'), domain('a.test'));
    writeFileSync(join(dir, 'b.yaml'), domain('b.test'));
    const src = createManifestsSource({ dir, logger: pino({ level: 'silent' }), pollMs: 100 });
    open.push(src);
    await src.start();
    const good = src.current()?.revision;
    expect(Object.keys(src.current()?.table.domains ?? {}).sort()).toEqual(['a.test', 'b.test']);

    writeFileSync(join(dir, 'b.yaml'), '');
    const err = await waitFor(() => src.lastError(), { timeoutMs: 5000, what: 'the load error' });
    expect(err.errors).toEqual([`${join(dir, 'b.yaml')}: empty: delete the file to remove its objects`]);
    expect(src.current()?.revision).toBe(good);

    writeFileSync(join(dir, 'b.yaml'), domain('b.test', 2525));
    await waitFor(() => src.current()?.table.domains['b.test']?.servers['main']?.port === 2525, {
      timeoutMs: 5000,
      what: 'the written file',
    });
    expect(src.lastError()).toBeUndefined();
  });
});

describe('a chmod is a change (the fingerprint has the ctime)', () => {
  it('the fingerprint of a file and of a folder changes on chmod alone', async () => {
    const dir = mkdtempSync(join(root, 'chmod-fp-'));
    const f = join(dir, 'a.yaml');
    writeFileSync(f, domain('a.test'));
    chmodSync(f, 0o600);
    const [file, folder] = [await fingerprint(f), await fingerprint(dir)];
    const ctime = statSync(f).ctimeMs;
    // the ctime has a resolution: chmod until it moves (at once on ext4, tmpfs)
    await waitFor(
      () => {
        chmodSync(f, statSync(f).mode & 0o777 ? 0 : 0o644);
        return statSync(f).ctimeMs !== ctime;
      },
      { what: 'a new ctime' },
    );
    expect(await fingerprint(f)).not.toBe(file);
    expect(await fingerprint(dir)).not.toBe(folder);
  });

  // Root reads any file, so this stands in for EACCES by refusing a file that no one but its owner may read.
  it('a file refused for its mode is loaded after `chmod 644`', async () => {
    const dir = mkdtempSync(join(root, 'chmod-'));
    const f = join(dir, 'a.yaml');
    writeFileSync(f, domain('a.test'));
    chmodSync(f, 0o600);
    const src = createPolledSource({
      kind: 'test',
      path: dir,
      required: { flag: '--manifests', kind: 'directory' },
      load: async (): Promise<LoadOutcome> =>
        (statSync(f).mode & 0o044) === 0
          ? { ok: false, errors: [`${f}: cannot read: EACCES`] }
          : loadManifestsDir(dir),
      logger: pino({ level: 'silent' }),
      pollMs: 50,
    });
    open.push(src);
    await src.start();
    expect(src.current()).toBeUndefined();
    chmodSync(f, 0o644);
    await waitFor(() => src.current(), { timeoutMs: 5000, what: 'the load after chmod' });
  });
});

describe('a load that failed for a transient reason (EMFILE, a compile worker that died) is retried', () => {
  it('at the next poll, then less often, with nothing changed on disk; the same error is logged once', async () => {
    const dir = mkdtempSync(join(root, 'retry-'));
    writeFileSync(join(dir, 'a.yaml'), domain('a.test'));
    let failures = 3;
    const { logger, errors } = capturingLogger();
    const src = createPolledSource({
      kind: 'test',
      path: dir,
      required: { flag: '--manifests', kind: 'directory' },
      load: async (): Promise<LoadOutcome> =>
        failures-- > 0
          ? { ok: false, errors: [`${dir}: cannot read: EMFILE`], retry: true }
          : loadManifestsDir(dir),
      logger,
      pollMs: 20,
    });
    open.push(src);
    await src.start();
    expect(src.current()).toBeUndefined();
    await waitFor(() => src.current(), { timeoutMs: 5000, what: 'the retried load' });
    expect(failures).toBe(-1);
    expect(errors).toEqual(['routing: cannot load the routing table']);
    expect(src.lastError()).toBeUndefined();
  });

  it('a content error is not retried: the next load is the next change', async () => {
    const dir = mkdtempSync(join(root, 'no-retry-'));
    const f = join(dir, 'a.yaml');
    writeFileSync(f, 'kind: [');
    const loads: string[] = [];
    const src = createPolledSource({
      kind: 'test',
      path: dir,
      required: { flag: '--manifests', kind: 'directory' },
      load: async (): Promise<LoadOutcome> => {
        loads.push(readFileSync(f, 'utf8'));
        return loadManifestsDir(dir);
      },
      logger: pino({ level: 'silent' }),
      pollMs: 20,
    });
    open.push(src);
    await src.start();
    expect(src.lastError()).toBeDefined();
    writeFileSync(f, domain('a.test'));
    await waitFor(() => src.current(), { timeoutMs: 5000, what: 'the load of the change' });
    expect(loads).toEqual(['kind: [', domain('a.test')]);
  });

  it.each([
    [undefined, 1],
    [1, 2],
    [2, 4],
    [32, 64],
    [64, 64],
  ])('after a wait of %s polls the next is %s', (previous, next) => {
    expect(nextRetryPolls(previous)).toBe(next);
  });
});

describe('a file being written is loaded once it stays the same', () => {
  it('a file rewritten every 25 ms is loaded once, in its final state', async () => {
    const dir = mkdtempSync(join(root, 'churn-'));
    const f = join(dir, 'trs.yaml');
    writeFileSync(f, 'start');
    const seen: string[] = [];
    const w = watchPath({ path: dir, pollMs: 30, debounceMs: 400 }, await fingerprint(dir), () => {
      seen.push(readFileSync(f, 'utf8'));
      return Promise.resolve('done' as const);
    });
    open.push(w);
    // a slow writer (the scenario, not synchronization): each step a new size
    for (let i = 1; i <= 8; i++) {
      writeFileSync(f, `part ${'x'.repeat(i)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    writeFileSync(f, 'final');
    await waitFor(() => seen.includes('final'), { timeoutMs: 5000, what: 'the final load' });
    expect(seen).toEqual(['final']);
  });
});
