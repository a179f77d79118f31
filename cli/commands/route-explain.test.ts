import { describe, expect, it } from 'vitest';
import type { RouteExplanation } from '../../routing/resolve.ts';
import { explanationLines } from './route-explain.ts';

const dual = (
  scope: 'All' | 'TestRecipients' | 'Accounts',
  extra: Partial<RouteExplanation> = {},
): RouteExplanation => ({
  policy: 'corp/example-com',
  mode: 'Dual',
  dual: { scope, bounces: 'Suppress' },
  split: undefined,
  ...extra,
});

describe('explanationLines: why the legs are what they are', () => {
  it.each<[string, RouteExplanation, string, string[]]>([
    [
      'no policy',
      { policy: undefined, mode: undefined, dual: undefined, split: undefined },
      'a@x',
      ['  policy:  none routes this domain'],
    ],
    [
      'Direct',
      { policy: 'corp/p', mode: 'Direct', dual: undefined, split: undefined },
      'a@x',
      ['  policy:  corp/p (Direct)'],
    ],
    [
      'Split',
      { policy: 'corp/p', mode: 'Split', dual: undefined, split: { unknownRecipients: 'Reject' } },
      'a@x',
      ['  policy:  corp/p (Split, unknown recipients: Reject)'],
    ],
    [
      'Dual for everyone, to an alias domain',
      { ...dual('All'), dual: { scope: 'All', bounces: 'Suppress', copyRecipientDomain: 'corp.zoho.test' } },
      'a@x',
      ["  policy:  corp/example-com (Dual, scope All, copies' bounces Suppress, copies to @corp.zoho.test)"],
    ],
    [
      'a test recipient by its own address',
      dual('TestRecipients', {
        testRecipient: { source: 'corp/alice', address: 'alice@x', byMailbox: false, active: true },
      }),
      'alice@x',
      [
        "  policy:  corp/example-com (Dual, scope TestRecipients, copies' bounces Suppress)",
        '  test recipient: corp/alice for alice@x',
      ],
    ],
    [
      'a subaddress found by its mailbox',
      dual('TestRecipients', {
        testRecipient: { source: 'corp/alice', address: 'alice@x', byMailbox: true, active: true },
      }),
      'alice+news@x',
      [
        "  policy:  corp/example-com (Dual, scope TestRecipients, copies' bounces Suppress)",
        '  test recipient: corp/alice for alice@x, the mailbox of alice+news@x',
      ],
    ],
    [
      'an expired test recipient',
      dual('TestRecipients', {
        testRecipient: { source: 'corp/bob', address: 'bob@x', byMailbox: false, active: false },
      }),
      'bob@x',
      [
        "  policy:  corp/example-com (Dual, scope TestRecipients, copies' bounces Suppress)",
        '  test recipient: corp/bob for bob@x (expired: routes like everyone else)',
      ],
    ],
    [
      'no test recipient under scope TestRecipients: why there is no copy',
      dual('TestRecipients'),
      'carol@x',
      [
        "  policy:  corp/example-com (Dual, scope TestRecipients, copies' bounces Suppress)",
        '  test recipient: none for this address or its mailbox, so no copy (scope TestRecipients copies test recipients only)',
      ],
    ],
    [
      'no test recipient under scope All: nothing to say',
      dual('All'),
      'carol@x',
      ["  policy:  corp/example-com (Dual, scope All, copies' bounces Suppress)"],
    ],
  ])('%s', (_name, e, recipient, want) => {
    expect(explanationLines(e, recipient)).toEqual(want);
  });
});
