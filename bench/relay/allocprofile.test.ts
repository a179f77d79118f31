import { describe, expect, it } from 'vitest';
import { summarizeAllocations, type AllocProfile } from './allocprofile.ts';

const frame = (
  functionName: string,
  url: string,
): { functionName: string; url: string; lineNumber: number } => ({
  functionName,
  url,
  lineNumber: 9,
});

// root -> relay accept (own) -> smtp-server send (library) -> Buffer (native); root -> nextTick (node)
const profile: AllocProfile = {
  head: {
    id: 1,
    callFrame: frame('(root)', ''),
    children: [
      {
        id: 2,
        callFrame: frame('accept', 'file:///x/mailroute-src/relay/spool/spool.ts'),
        children: [
          {
            id: 3,
            callFrame: frame('send', 'file:///x/node_modules/smtp-server/dist/esm/smtp-connection.js'),
            children: [{ id: 4, callFrame: frame('Buffer', '') }],
          },
        ],
      },
      { id: 5, callFrame: frame('nextTick', 'node:internal/process/task_queues') },
    ],
  },
  samples: [
    { nodeId: 2, size: 100 },
    { nodeId: 3, size: 200 },
    { nodeId: 4, size: 300 },
    { nodeId: 4, size: 300 },
    { nodeId: 5, size: 100 },
  ],
};

describe('summarizeAllocations', () => {
  const s = summarizeAllocations(profile, 10);
  it('totals every sample', () => {
    expect(s.totalBytes).toBe(1000);
  });
  it('charges a library or native allocation to the nearest frame of the project above it', () => {
    expect(s.ownFrames).toEqual([
      { key: 'accept relay/spool/spool.ts:10', bytes: 900, pct: 90 },
      { key: '[no own frame] node', bytes: 100, pct: 10 },
    ]);
  });
  it('by owner and by function', () => {
    expect(s.owners.map((r) => [r.key, r.bytes])).toEqual([
      ['(native/VM)', 600],
      ['smtp-server', 200],
      ['relay/spool/spool.ts', 100],
      ['node:internal', 100],
    ]);
    expect(s.functions[0]).toEqual({ key: 'Buffer', bytes: 600, pct: 60 });
    expect(s.functions.find((r) => r.key.startsWith('send'))?.bytes).toBe(200);
  });
});
