import { describe, expect, it } from 'vitest';
import type { CopyLeg, DeliveryPlan, Leg, RecordLeg, ServerRoute } from '../../routing/model.ts';
import type { LegState, SpoolState } from '../spool/types.ts';
import { rerouteState } from './reroute.ts';

const server = (name: string): ServerRoute => ({
  name,
  host: `${name}.example`,
  port: 25,
  mx: false,
  tls: 'None',
  maxConnections: 10,
});
const primaryLeg = (s: string, recipient = 'bob@example.com'): RecordLeg => ({
  server: server(s),
  domain: 'example.com',
  recipient,
  role: 'primary',
  bounces: 'Notify',
});
const copyLeg = (s: string, recipient = 'bob@example.com'): CopyLeg => ({
  server: server(s),
  domain: 'example.com',
  recipient,
  role: 'copy',
  bounces: 'Suppress',
});
const leg = (s: string, role: Leg['role'], recipient = 'bob@example.com'): Leg =>
  role === 'primary' ? primaryLeg(s, recipient) : copyLeg(s, recipient);
const legState = (l: Leg, state: LegState['state']): LegState => ({
  recipient: 'bob@example.com',
  leg: l,
  state,
  attempts: state === 'pending' ? 0 : 3,
  ...(state === 'deferred' ? { nextAttemptAt: '2026-12-02T13:00:00.000Z' } : {}),
});
const message = (...legs: LegState[]): SpoolState => ({
  version: 1,
  id: '0mx0qz1k20001a7f',
  meta: {
    mailFrom: 'a@outside.example',
    clientAddress: '127.0.0.1',
    clientHostname: '',
    helo: 'x',
    receivedAt: '2026-12-02T12:00:00.000Z',
    revision: 'r',
    smtputf8: false,
    body8bit: false,
  },
  size: 10,
  legs,
});
const accept = (record: RecordLeg, ...copies: CopyLeg[]): DeliveryPlan => ({
  verdict: 'accept',
  recipient: 'bob@example.com',
  domain: 'example.com',
  legs: [record, ...copies],
});

describe('rerouteState', () => {
  it('moves an open copy to the new secondary; the delivered primary stays delivered', () => {
    const s = message(
      legState(leg('legacy', 'primary'), 'delivered'),
      legState(leg('zoho', 'copy'), 'deferred'),
    );
    const r = rerouteState(s, () => accept(primaryLeg('legacy'), copyLeg('zoho2')));
    expect(r.changed).toEqual([
      {
        index: 1,
        recipient: 'bob@example.com',
        role: 'copy',
        from: 'zoho <bob@example.com>',
        to: 'zoho2 <bob@example.com>',
      },
    ]);
    expect(r.state.legs[0]).toBe(s.legs[0]);
    expect(r.state.legs[1]).toEqual({
      recipient: 'bob@example.com',
      leg: leg('zoho2', 'copy'),
      state: 'pending',
      attempts: 3,
    });
  });

  it.each([
    {
      name: 'the new plan refuses the recipient',
      plan: {
        verdict: 'reject',
        recipient: 'bob@example.com',
        reply: { code: 554, enhanced: '5.7.1', text: 'relay access denied' },
        reason: 'RelayDenied',
        legs: [],
      } satisfies DeliveryPlan,
      reason: 'the current routing does not accept bob@example.com: 554 5.7.1 relay access denied',
    },
    {
      name: 'the new plan has no copy',
      plan: accept(primaryLeg('legacy')),
      reason: 'the current plan of bob@example.com has no copy leg',
    },
    {
      name: 'the same leg',
      plan: accept(primaryLeg('legacy'), copyLeg('zoho')),
      reason: 'already on the current plan',
    },
  ])('leaves the leg as it is when $name', ({ plan, reason }) => {
    const s = message(
      legState(leg('legacy', 'primary'), 'delivered'),
      legState(leg('zoho', 'copy'), 'deferred'),
    );
    const r = rerouteState(s, () => plan);
    expect(r.changed).toEqual([]);
    expect(r.state).toBe(s);
    expect(r.unchanged).toEqual([{ index: 1, recipient: 'bob@example.com', role: 'copy', reason }]);
  });

  // a TestRecipient switched from keepPrimaryCopy: true to false: its primary moves to the copy's mailbox
  const copyOnly = accept(primaryLeg('zoho', 'bob@example.zoho.example'));
  const switched = (copy: LegState['state']): SpoolState =>
    message(
      legState(leg('legacy', 'primary'), 'deferred'),
      legState(leg('zoho', 'copy', 'bob@example.zoho.example'), copy),
    );

  it('a primary moved to the mailbox a delivered copy reached is delivered, not sent there again', () => {
    const s = switched('delivered');
    s.legs[0] = { ...s.legs[0]!, delayPending: true }; // a delay notice was owed while it waited
    const r = rerouteState(s, () => copyOnly);
    expect(r.changed).toEqual([
      {
        index: 0,
        recipient: 'bob@example.com',
        role: 'primary',
        from: 'legacy <bob@example.com>',
        to: 'zoho <bob@example.zoho.example> (delivered already by leg 1)',
      },
    ]);
    expect(r.state.legs[0]).toMatchObject({
      leg: primaryLeg('zoho', 'bob@example.zoho.example'),
      state: 'delivered',
      lastReply: 'delivered already by leg 1',
    });
    expect(r.state.legs[0]).not.toHaveProperty('nextAttemptAt');
    expect(r.state.legs[0]).not.toHaveProperty('delayPending');
  });

  it('a primary moved to the mailbox an open copy goes to stays where it was', () => {
    const s = switched('deferred');
    const r = rerouteState(s, () => copyOnly);
    expect(r.state.legs[0]).toBe(s.legs[0]);
    expect(r.unchanged).toContainEqual({
      index: 0,
      recipient: 'bob@example.com',
      role: 'primary',
      reason: 'leg 1 of bob@example.com already goes to zoho <bob@example.zoho.example>',
    });
  });

  it('a primary moved to the mailbox of a copy that failed goes there: the mailbox does not have the message', () => {
    const r = rerouteState(switched('suppressed'), () => copyOnly);
    expect(r.state.legs[0]).toMatchObject({
      state: 'pending',
      leg: primaryLeg('zoho', 'bob@example.zoho.example'),
    });
  });

  it('does not touch a leg in flight, nor add legs the message did not have', () => {
    const s = message(legState(leg('legacy', 'primary'), 'pending'));
    const r = rerouteState(s, () => accept(primaryLeg('new'), copyLeg('zoho')), new Set([0]));
    expect(r.state).toBe(s);
    expect(r.unchanged[0]?.reason).toBe('an attempt is in flight');
  });
});
