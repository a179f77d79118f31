import { describe, expect, it } from 'vitest';
import { openedResources } from './startup.ts';

describe('openedResources', () => {
  it('closes newest first, goes on past a close that throws, and closes each once', async () => {
    const r = openedResources();
    const closed: string[] = [];
    r.opened('spool', () => void closed.push('spool'));
    r.opened('http', () => Promise.reject(new Error('boom')));
    r.opened('admin', async () => {
      await Promise.resolve();
      closed.push('admin');
    });
    const errors: string[] = [];
    await r.closeAll((name, err) => errors.push(`${name}: ${(err as Error).message}`));
    expect(closed).toEqual(['admin', 'spool']);
    expect(errors).toEqual(['http: boom']);
    await r.closeAll(() => undefined);
    expect(closed).toEqual(['admin', 'spool']);
  });
});
