import { describe, expect, it } from 'vitest';
import { isOwnUrl, ownerOf, summarizeProfile, type CpuProfile } from './cpuprofile.ts';

const frame = (
  functionName: string,
  url: string,
): { functionName: string; url: string; lineNumber: number } => ({
  functionName,
  url,
  lineNumber: 9,
});

// root -> accept (own) -> send (library) -> writeUtf8String (native); root -> nextTick (node); root -> (idle)
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)', ''), children: [2, 5, 6] },
    { id: 2, callFrame: frame('accept', 'file:///x/mailroute-src/relay/spool/spool.ts'), children: [3] },
    {
      id: 3,
      callFrame: frame('send', 'file:///x/node_modules/smtp-server/dist/esm/smtp-connection.js'),
      children: [4],
    },
    { id: 4, callFrame: frame('writeUtf8String', '') },
    { id: 5, callFrame: frame('nextTick', 'node:internal/process/task_queues') },
    { id: 6, callFrame: frame('(idle)', '') },
  ],
  samples: [2, 3, 4, 4, 5, 6],
  timeDeltas: [1000, 1000, 1000, 1000, 1000, 5000],
};

describe('summarizeProfile', () => {
  const s = summarizeProfile(profile, 10);
  const ms = (rows: readonly { key: string; ms: number }[]): Record<string, number> =>
    Object.fromEntries(rows.map((r) => [r.key, r.ms]));

  it('puts self time on the sampled function and its package', () => {
    expect(s.totalMs).toBe(10);
    expect(ms(s.self)).toMatchObject({
      writeUtf8String: 2,
      'accept relay/spool/spool.ts:10': 1,
      '(idle)': 5,
    });
    expect(ms(s.owners)).toMatchObject({ '(native/VM)': 2, 'smtp-server': 1, 'relay/spool/spool.ts': 1 });
  });

  it('gives each sample to the nearest frame of the project on its stack: what made the library or system call', () => {
    expect(ms(s.nearest)).toEqual({
      'accept relay/spool/spool.ts:10': 4,
      '[no own frame] node': 1,
      '(idle)': 5,
    });
  });

  it.each([
    ['file:///x/mailroute-src/relay/delivery/engine.ts', true],
    ['file:///work/main/bench/relay/floor-relay.ts', true],
    ['file:///work/main/bench/relay/run.ts', false],
    ['file:///x/node_modules/smtp-server/dist/esm/smtp-connection.js', false],
    ['node:internal/streams/writable', false],
    ['', false],
  ])('isOwnUrl(%s) is %s', (url, own) => {
    expect(isOwnUrl(url)).toBe(own);
  });

  it('names the owner of a URL: package, node module or project file', () => {
    expect(ownerOf('file:///x/node_modules/@scope/pkg/index.js')).toBe('@scope/pkg');
    expect(ownerOf('node:internal/fs/promises')).toBe('node:internal');
    expect(ownerOf('file:///x/mailroute-src/relay/relay.ts')).toBe('relay/relay.ts');
    // every folder of the project's own code is named short, as isOwnUrl counts it
    expect(ownerOf('file:///x/mailroute-src/lib/logger.ts')).toBe('lib/logger.ts');
    expect(ownerOf('file:///x/mailroute-src/contract/routing-configmap.ts')).toBe(
      'contract/routing-configmap.ts',
    );
  });
});
