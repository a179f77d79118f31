import { describe, expect, it } from 'vitest';
import type { Credentials } from '../../contract/credentials-secret.ts';
import { startCredentialsWatch, type CredentialsApi, type SecretObject } from './credentials.ts';
import { waitFor } from '../../test/support/wait.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };
const secret = (rv: string, data: Record<string, string>): SecretObject => ({
  metadata: { name: 'mailroute-credentials', resourceVersion: rv },
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])),
});

/** An in-memory API: list returns `current` (or throws while `down`), watches are driven by the test. */
function fakeApi(initial: SecretObject | undefined) {
  const state = {
    current: initial,
    down: false,
    lists: 0,
    watches: [] as {
      rv: string | undefined;
      emit: (t: string, s: SecretObject) => void;
      end: (e: unknown) => void;
    }[],
  };
  const api: CredentialsApi = {
    list(namespace, name) {
      expect([namespace, name]).toEqual(['mailroute-system', 'mailroute-credentials']);
      state.lists++;
      if (state.down) return Promise.reject(new Error('connect ECONNREFUSED'));
      return Promise.resolve({
        secret: state.current,
        resourceVersion: state.current?.metadata?.resourceVersion ?? '1',
      });
    },
    watch(_ns, _name, rv, onEvent, onDone) {
      state.watches.push({ rv, emit: onEvent, end: onDone });
      return Promise.resolve(() => undefined);
    },
  };
  return { api, state };
}

/** A watch of mailroute-credentials on fakeApi(initial) that records every set it hands on in `seen`. */
function watched(
  initial: SecretObject | undefined,
  over: Partial<Parameters<typeof startCredentialsWatch>[0]> = {},
) {
  const { api, state } = fakeApi(initial);
  const seen: ReadonlyMap<string, Credentials>[] = [];
  const w = startCredentialsWatch({
    namespace: 'mailroute-system',
    name: 'mailroute-credentials',
    api,
    onCredentials: (m) => seen.push(new Map(m)),
    logger: quiet,
    ...over,
  });
  return { state, seen, w };
}

describe('startCredentialsWatch', () => {
  it('lists, then follows MODIFIED and DELETED events; an unchanged Secret is not handed on again', async () => {
    const { state, seen, w } = watched(secret('5', { 'mail.a.username': 'u', 'mail.a.password': 'p' }));
    await w.start();
    expect(seen).toEqual([new Map([['mail/a', { username: 'u', password: 'p' }]])]);
    await waitFor(() => state.watches.length === 1, { what: 'the first watch' });
    const watch = state.watches[0]!;
    expect(watch.rv).toBe('5');
    watch.emit('MODIFIED', secret('6', { 'mail.a.username': 'u', 'mail.a.password': 'p' }));
    expect(seen).toHaveLength(1);
    watch.emit(
      'MODIFIED',
      secret('7', {
        'mail.a.username': 'u',
        'mail.a.password': 'new',
        'b.c.d.username': 'x',
        'b.c.d.password': 'y',
      }),
    );
    expect(seen[1]).toEqual(
      new Map([
        ['b/c.d', { username: 'x', password: 'y' }],
        ['mail/a', { username: 'u', password: 'new' }],
      ]),
    );
    watch.emit('DELETED', secret('8', {}));
    expect(seen[2]).toEqual(new Map());
    w.stop();
  });

  it('an absent Secret is an empty set; an unreachable API is retried, then the watch resumes from a fresh list', async () => {
    const { state, seen, w } = watched(undefined, { backoffMinMs: 5, backoffMaxMs: 20, random: () => 0.5 });
    state.down = true;
    await w.start();
    expect(seen).toEqual([]);
    expect(state.watches).toHaveLength(0);
    state.current = secret('9', { 'mail.a.username': 'u', 'mail.a.password': 'p' });
    state.down = false;
    await waitFor(() => state.watches.length === 1, { what: 'the first watch' });
    expect(seen).toEqual([new Map([['mail/a', { username: 'u', password: 'p' }]])]);
    // The watch ends with an error: re-list (sees the Secret deleted meanwhile), watch again.
    state.current = undefined;
    const lists = state.lists;
    state.watches[0]!.end(new Error('stream reset'));
    await waitFor(() => state.watches.length === 2, { what: 'the watch after the restart' });
    expect(state.lists).toBeGreaterThan(lists);
    expect(seen[1]).toEqual(new Map());
    w.stop();
  });
});
