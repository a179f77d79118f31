import { describe, expect, it } from 'vitest';
import { changedSecrets } from './secrets.ts';
import type { Credentials } from './types.ts';

const c = (username: string, password: string): Credentials => ({ username, password });
const map = (x: Record<string, Credentials>): Map<string, Credentials> => new Map(Object.entries(x));

describe('changedSecrets', () => {
  it.each<[string, Map<string, Credentials> | undefined, Map<string, Credentials>, string[]]>([
    ['nothing before: every Secret is new', undefined, map({ 'a/x': c('u', 'p') }), ['a/x']],
    ['the same', map({ 'a/x': c('u', 'p') }), map({ 'a/x': c('u', 'p') }), []],
    ['a rotated password', map({ 'a/x': c('u', 'p') }), map({ 'a/x': c('u', 'q') }), ['a/x']],
    ['another user', map({ 'a/x': c('u', 'p') }), map({ 'a/x': c('v', 'p') }), ['a/x']],
    ['one added, one removed', map({ 'a/x': c('u', 'p') }), map({ 'a/y': c('u', 'p') }), ['a/y', 'a/x']],
    [
      'a name in another namespace is another Secret',
      map({ 'a/x': c('u', 'p'), 'b/x': c('u', 'p') }),
      map({ 'a/x': c('u', 'p'), 'b/x': c('u', 'p2') }),
      ['b/x'],
    ],
  ])('%s', (_name, before, after, want) => {
    expect([...changedSecrets(before, after)]).toEqual(want);
  });
});
