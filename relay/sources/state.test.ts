import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { compile } from '../../routing/compile.ts';
import { SourceState } from './state.ts';
import type { RoutingSnapshot } from './types.ts';

const snapshot = (revision: string): RoutingSnapshot => ({
  table: compile([]).table,
  revision,
  secrets: new Map(),
  loadedAt: new Date(0),
  origin: 'test',
});

describe('SourceState.publish', () => {
  it('puts the snapshot in use, clears the last error, and tells every listener even when one throws', () => {
    const lines: string[] = [];
    const log = pino({ level: 'error' }, { write: (l: string) => void lines.push(l) });
    const state = new SourceState();
    state.lastError = { at: new Date(0), errors: ['bad manifest'] };
    const seen: string[] = [];
    const source = state.source(
      'test',
      () => Promise.resolve(),
      () => undefined,
    );
    source.onChange(() => {
      throw new Error('swap failed');
    });
    source.onChange((s) => seen.push(s.revision));
    state.publish(snapshot('r2'), log);
    expect(source.current()?.revision).toBe('r2');
    expect(source.lastError()).toBeUndefined();
    expect(seen).toEqual(['r2']);
    expect(lines.join('')).toContain('routing: change listener failed');
  });
});
