import { describe, expect, it } from 'vitest';
import { pickEviction, sweepSession, timeoutsInForce, underStress, type SessionFacts } from './slow.ts';

const f = (over: Partial<SessionFacts>): SessionFacts => ({
  openedAt: 0,
  lineStartedAt: 0,
  busy: false,
  sentMail: false,
  ...over,
});

describe('slow clients (pure)', () => {
  it.each([
    ['idle, young', f({}), 1000, 'keep'],
    ['partial line older than the command timeout', f({ lineStartedAt: 500 }), 2000, 'CommandTimeout'],
    ['partial line within the command timeout', f({ lineStartedAt: 1500 }), 2000, 'keep'],
    ['session older than the session timeout', f({}), 10_000, 'SessionTimeout'],
    ['busy (DATA, a callout): never cut here', f({ lineStartedAt: 1, busy: true }), 10_000, 'keep'],
    ['the client half-closed and nothing is owed to it', f({ clientDone: true }), 1000, 'ClientDone'],
    [
      'the client half-closed while its message is stored: kept for the 250',
      f({ clientDone: true, busy: true }),
      1000,
      'keep',
    ],
  ] as const)('%s', (_name, facts, now, want) => {
    expect(sweepSession(facts, now, 1000, 10_000)).toBe(want);
  });

  it('evicts the oldest session that sent no mail, is not busy and is at least 1 s old', () => {
    const sessions: [string, SessionFacts][] = [
      ['mailer', f({ openedAt: 0, sentMail: true })],
      ['sending', f({ openedAt: 100, busy: true })],
      ['old-idle', f({ openedAt: 200 })],
      ['newer-idle', f({ openedAt: 300 })],
      ['fresh', f({ openedAt: 4500 })],
    ];
    expect(pickEviction(sessions, 5000)).toBe('old-idle');
    expect(pickEviction(sessions.slice(0, 2), 5000)).toBeUndefined();
    expect(pickEviction([['fresh', f({ openedAt: 4500 })]], 5000)).toBeUndefined();
  });

  it('shortens the idle and command timeouts under stress (3/4 of the table)', () => {
    const p = {
      idleTimeoutMs: 300_000,
      commandTimeoutMs: 30_000,
      sessionTimeoutMs: 1_800_000,
      stressTimeoutMs: 10_000,
      stressRatio: 0.75,
      maxConnections: 100,
    };
    expect(underStress(74, p)).toBe(false);
    expect(underStress(75, p)).toBe(true);
    expect(timeoutsInForce(p, false)).toEqual({ idleMs: 300_000, commandMs: 30_000 });
    expect(timeoutsInForce(p, true)).toEqual({ idleMs: 10_000, commandMs: 10_000 });
  });
});
