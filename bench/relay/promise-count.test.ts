import { describe, expect, it } from 'vitest';
import { ownFrame, summarize } from './promise-count.ts';

describe('promise-count', () => {
  it.each<[string, string, string]>([
    [
      'the first frame of the project, past node and the library frames',
      [
        'Error',
        '    at Promise.then (<anonymous>)',
        '    at process.processTicksAndRejections (node:internal/process/task_queues:104:5)',
        '    at withLock (file:///tmp/x/mailroute-src/relay/spool/spool.ts:701:22)',
        '    at Object.load (file:///tmp/x/mailroute-src/relay/spool/spool.ts:1190:14)',
      ].join('\n'),
      'relay/spool/spool.ts:701',
    ],
    [
      'a frame without file://, and an async frame',
      ['Error', '    at async run (/work/main/relay/delivery/engine.ts:346:47)'].join('\n'),
      'relay/delivery/engine.ts:346',
    ],
    [
      'a package of the same name under node_modules is not the project',
      [
        'Error',
        '    at f (/work/main/node_modules/some-pkg/relay/index.js:3:1)',
        '    at g (/work/main/lib/logger.ts:80:5)',
      ].join('\n'),
      'lib/logger.ts:80',
    ],
    [
      'the hook itself (bench/relay/promise-count.ts) is not the project',
      [
        'Error',
        '    at file:///work/main/bench/relay/promise-count.ts:45:31',
        '    at Results.record (file:///work/main/relay/delivery/results.ts:143:12)',
      ].join('\n'),
      'relay/delivery/results.ts:143',
    ],
    ['no frame of the project', ['Error', '    at Promise.then (<anonymous>)'].join('\n'), 'other'],
  ])('%s', (_what, stack, frame) => {
    expect(ownFrame(stack)).toBe(frame);
  });

  it('scales the samples back and puts the largest first', () => {
    const s = new Map([
      ['relay/a.ts:1', 2],
      ['relay/b.ts:2', 5],
      ['other', 2],
    ]);
    expect(summarize(s, 31)).toEqual([
      { frame: 'relay/b.ts:2', promises: 155 },
      { frame: 'other', promises: 62 },
      { frame: 'relay/a.ts:1', promises: 62 },
    ]);
  });
});
