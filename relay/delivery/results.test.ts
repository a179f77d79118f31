// What the results module reports for every leg it records (relay/delivery/results.ts): one `delivery attempt` line
// per leg with the same fields whether its transaction had one leg or several (a transaction of several logs through
// a child logger that carries the shared fields), and mailroute_deliveries_total counted per leg.
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../lib/logger.ts';
import {
  busy,
  copyLeg,
  engineHarness,
  primaryLeg,
  server,
  type EngineHarness,
} from '../../test/support/engine-harness.ts';

let h: EngineHarness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

const ok = { kind: 'smtp', code: 250, text: '250 2.0.0 ok' } as const;
const mx1 = server('mx1');
const mx2 = server('mx2');

type Line = Record<string, unknown>;

describe('results: delivery attempt lines and counts', () => {
  it('one line per leg with the same fields for transactions of one leg and of several', async () => {
    const lines: Line[] = [];
    const logger = createLogger({
      level: 'info',
      format: 'json',
      base: { component: 'relay' },
      write: (l) => lines.push(JSON.parse(l) as Line),
    });
    h = await engineHarness({ logger });
    // u1 is deferred by mx2 (its copy): a line with nextAttemptAt among lines without one
    h.net.reply = (host, rcpt) => (host === 'mx2.test' && rcpt === 'u1@y.test' ? busy : ok);
    const many = await h.accept(
      ['u0', 'u1', 'u2'].map((u) => ({
        recipient: `${u}@x.test`,
        legs: [primaryLeg(`${u}@x.test`, mx1), copyLeg(`${u}@y.test`, mx2)],
      })),
    );
    const one = await h.accept([{ recipient: 'solo@x.test', legs: [primaryLeg('solo@x.test', mx1)] }]);
    const attempts = lines.filter((l) => l['msg'] === 'delivery attempt');
    expect(attempts).toHaveLength(7);
    const keys = (l: Line): string[] =>
      Object.keys(l)
        .filter((k) => k !== 'nextAttemptAt')
        .sort();
    const expected = [
      'attempt',
      'component',
      'durationMs',
      'host',
      'level',
      'msg',
      'queueId',
      'recipient',
      'reply',
      'result',
      'role',
      'server',
      'time',
    ];
    for (const l of attempts) expect(keys(l)).toEqual(expected);
    const of = (queueId: string, recipient: string): Line | undefined =>
      attempts.find((l) => l['queueId'] === queueId && l['recipient'] === recipient);
    expect(of(one, 'solo@x.test')).toMatchObject({
      server: 'mx1',
      role: 'primary',
      result: 'delivered',
      attempt: 1,
    });
    for (const u of ['u0', 'u1', 'u2']) {
      expect(of(many, `${u}@x.test`)).toMatchObject({ server: 'mx1', host: 'mx1.test:25', role: 'primary' });
      expect(of(many, `${u}@y.test`)).toMatchObject({ server: 'mx2', host: 'mx2.test:25', role: 'copy' });
    }
    expect(of(many, 'u1@y.test')).toMatchObject({ result: 'deferred' });
    expect(typeof of(many, 'u1@y.test')?.['nextAttemptAt']).toBe('string');
    expect(attempts.filter((l) => l['nextAttemptAt'] !== undefined)).toHaveLength(1);

    const counts = (await h.metrics.deliveries.get()).values.map((v) => [
      `${String(v.labels.server)}/${String(v.labels.leg)}/${String(v.labels.result)}`,
      v.value,
    ]);
    expect(Object.fromEntries(counts)).toEqual({
      'mx1/primary/delivered': 4,
      'mx2/copy/delivered': 2,
      'mx2/copy/deferred': 1,
    });
  });
});
