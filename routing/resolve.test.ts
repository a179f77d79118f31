import { describe, expect, it } from 'vitest';
import { parseAddress } from './address.ts';
import { compile } from './compile.ts';
import type { DeliveryPlan, MailboxFact } from './model.ts';
import {
  buildIndex,
  explainRoute,
  mailboxOf,
  planToJson,
  resolve,
  softBounceFor,
  verificationNeeded,
} from './resolve.ts';
import { cutoverStage, exampleDomain, examplePolicy, testRecipient } from './test-fixtures.ts';
import type { MailrouteObject } from './types.ts';

const NOW = new Date('2026-06-01T00:00:00Z');

function index(objects: MailrouteObject[]) {
  const r = compile(objects);
  expect(r.issues).toEqual([]);
  return buildIndex(r.table);
}

/** A plan in one line: "accept primary:old:a@example.com:Notify copy:new:a@x:Suppress" or "reject 554 5.7.1". */
function brief(plan: DeliveryPlan): string {
  if (plan.verdict !== 'accept') return `${plan.verdict} ${plan.reply.code} ${plan.reply.enhanced}`;
  return ['accept', ...plan.legs.map((l) => `${l.role}:${l.server.name}:${l.recipient}:${l.bounces}`)].join(
    ' ',
  );
}

/** example.com's policy: Dual from old to new, with `dual` (the policy's dual settings) when given. */
const dualPolicy = (dual?: Record<string, unknown>) =>
  examplePolicy({ mode: 'Dual', secondary: 'new', ...(dual ? { dual } : {}) });
/** example.com's policy: Split between old and new, with `split` when given. */
const splitPolicy = (split?: Record<string, unknown>) =>
  examplePolicy({ mode: 'Split', secondary: 'new', ...(split ? { split } : {}) });
/**
 * example.com's Split with unknown recipients refused: softBounce in its own fields when `own`, and one dated stage
 * of the same routing until `stage.until` with the stage's own softBounce when `stage` is given.
 */
const splitRejectSoft = (o: { own?: boolean; stage?: { until: string; softBounce: boolean } }) => {
  const routing = { mode: 'Split', secondary: 'new', split: { unknownRecipients: 'Reject' } };
  return examplePolicy({
    ...routing,
    ...(o.own === true ? { softBounce: true } : {}),
    ...(o.stage !== undefined
      ? {
          stages: [
            {
              ...routing,
              name: 'cutover',
              until: o.stage.until,
              primary: 'old',
              ...(o.stage.softBounce ? { softBounce: true } : {}),
            },
          ],
        }
      : {}),
  });
};
/** example.com, whose `server` is asked at RCPT time whether a mailbox exists. */
const verifiedBy = (server: string) => exampleDomain({ recipientVerification: { server } });
/** example.com, with `address` listed as an account on `server`. */
const withAccount = (server: string, address: string) =>
  exampleDomain({ accounts: [{ server, addresses: [address] }] });

const tr = (name: string, spec: Record<string, unknown>) =>
  testRecipient(name, { policyRef: { name: 'example-com' }, ...spec });

interface Row {
  row: string;
  objects: () => MailrouteObject[];
  to: string;
  verified?: MailboxFact;
  /** server:address the callout must be asked about (when verified is set). */
  asks?: string;
  want: string;
}

// The docs/design.md §2 semantics table, row by row, plus the edges (copyRecipientDomain, forwardTo, keepPrimaryCopy,
// expiresAt, verification, rejectUnknownRecipients).
const rows: Row[] = [
  {
    row: 'Direct: any recipient -> primary',
    objects: () => [exampleDomain(), examplePolicy({ mode: 'Direct' })],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify',
  },
  {
    row: 'Dual scope All: any -> primary + copy to secondary',
    objects: () => [exampleDomain(), dualPolicy()],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify copy:new:alice@example.com:Suppress',
  },
  {
    row: 'Dual scope All with copyRecipientDomain and bounces Notify',
    objects: () => [exampleDomain(), dualPolicy({ copyRecipientDomain: 'zoho.example', bounces: 'Notify' })],
    to: 'Alice@Example.COM',
    want: 'accept primary:old:Alice@example.com:Notify copy:new:Alice@zoho.example:Notify',
  },
  {
    row: 'Dual scope Accounts: has an account on the secondary -> primary + copy',
    objects: () => [withAccount('new', 'alice@example.com'), dualPolicy({ scope: 'Accounts' })],
    to: 'ALICE@example.com',
    want: 'accept primary:old:ALICE@example.com:Notify copy:new:ALICE@example.com:Suppress',
  },
  {
    row: 'Dual scope Accounts: otherwise -> primary',
    objects: () => [withAccount('new', 'alice@example.com'), dualPolicy({ scope: 'Accounts' })],
    to: 'bob@example.com',
    want: 'accept primary:old:bob@example.com:Notify',
  },
  {
    row: 'Dual scope Accounts: verified on the secondary -> primary + copy',
    objects: () => [verifiedBy('new'), dualPolicy({ scope: 'Accounts' })],
    to: 'bob@example.com',
    verified: 'exists',
    want: 'accept primary:old:bob@example.com:Notify copy:new:bob@example.com:Suppress',
  },
  {
    row: 'Dual scope Accounts with copyRecipientDomain: the secondary is asked about the copy address',
    objects: () => [
      verifiedBy('new'),
      dualPolicy({ scope: 'Accounts', copyRecipientDomain: 'zoho-test.example' }),
    ],
    to: 'bob@example.com',
    verified: 'exists',
    asks: 'new:bob@zoho-test.example',
    want: 'accept primary:old:bob@example.com:Notify copy:new:bob@zoho-test.example:Suppress',
  },
  {
    row: 'Dual scope Accounts: verification inconclusive -> primary only',
    objects: () => [verifiedBy('new'), dualPolicy({ scope: 'Accounts' })],
    to: 'bob@example.com',
    verified: 'unknown',
    want: 'accept primary:old:bob@example.com:Notify',
  },
  {
    row: 'Dual any scope: active TestRecipient -> primary + copy to forwardTo',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients' }),
      tr('alice', { address: 'alice@example.com', forwardTo: 'alice@zoho.example' }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify copy:new:alice@zoho.example:Suppress',
  },
  {
    row: 'Dual scope All: active TestRecipient -> its forwardTo instead of the scope copy',
    objects: () => [
      exampleDomain(),
      dualPolicy({ copyRecipientDomain: 'alias.example' }),
      tr('alice', { address: 'alice@example.com', forwardTo: 'a.smith@zoho.example' }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify copy:new:a.smith@zoho.example:Suppress',
  },
  {
    row: 'Dual scope Accounts: active TestRecipient without an account still gets its copy',
    objects: () => [
      withAccount('new', 'bob@example.com'),
      dualPolicy({ scope: 'Accounts' }),
      tr('alice', { address: 'alice@example.com' }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify copy:new:alice@example.com:Suppress',
  },
  {
    row: 'TestRecipient without forwardTo: copyRecipientDomain applies',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients', copyRecipientDomain: 'zoho.example' }),
      tr('alice', { address: 'alice@example.com' }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify copy:new:alice@zoho.example:Suppress',
  },
  {
    // The mailbox of record: the secondary's mailbox is the only one, so its leg is the primary and bounces.
    row: 'TestRecipient keepPrimaryCopy false -> the secondary is the leg of record (Notify despite Suppress)',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients' }),
      tr('alice', { address: 'alice@example.com', keepPrimaryCopy: false }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:new:alice@example.com:Notify',
  },
  {
    row: 'TestRecipient keepPrimaryCopy false with forwardTo and copyRecipientDomain -> forwardTo is the record',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'All', copyRecipientDomain: 'zoho.example', bounces: 'Suppress' }),
      tr('alice', { address: 'alice@example.com', forwardTo: 'al@fwd.example', keepPrimaryCopy: false }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:new:al@fwd.example:Notify',
  },
  {
    row: 'TestRecipient keepPrimaryCopy true with bounces Suppress -> primary + suppressed copy at forwardTo',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients', bounces: 'Suppress' }),
      tr('alice', { address: 'alice@example.com', forwardTo: 'al@fwd.example' }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify copy:new:al@fwd.example:Suppress',
  },
  {
    row: 'TestRecipient before expiresAt is active',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients' }),
      tr('alice', {
        address: 'alice@example.com',
        keepPrimaryCopy: false,
        expiresAt: '2026-06-01T00:00:01Z',
      }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:new:alice@example.com:Notify',
  },
  {
    row: 'TestRecipient after expiresAt routes like everyone else',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients' }),
      tr('alice', {
        address: 'alice@example.com',
        keepPrimaryCopy: false,
        expiresAt: '2026-06-01T00:00:00Z',
      }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify',
  },
  {
    row: 'Dual scope TestRecipients: not a TestRecipient -> primary',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients' }),
      tr('alice', { address: 'alice@example.com' }),
    ],
    to: 'bob@example.com',
    want: 'accept primary:old:bob@example.com:Notify',
  },
  {
    row: 'TestRecipients have no effect outside Dual',
    objects: () => [
      exampleDomain(),
      examplePolicy({ mode: 'Direct' }),
      tr('alice', { address: 'alice@example.com', keepPrimaryCopy: false }),
    ],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify',
  },
  {
    row: 'Split: known on the primary (accounts) -> primary',
    objects: () => [withAccount('old', 'alice@example.com'), splitPolicy()],
    to: 'Alice@example.com',
    want: 'accept primary:old:Alice@example.com:Notify',
  },
  {
    row: 'Split: known on the primary (verification) -> primary',
    objects: () => [verifiedBy('old'), splitPolicy()],
    to: 'alice@example.com',
    verified: 'exists',
    want: 'accept primary:old:alice@example.com:Notify',
  },
  {
    row: 'Split: unknown on the primary (accounts) -> secondary',
    objects: () => [withAccount('old', 'alice@example.com'), splitPolicy()],
    to: 'bob@example.com',
    want: 'accept primary:new:bob@example.com:Notify',
  },
  {
    row: 'Split: unknown on the primary (verification says absent) -> secondary',
    objects: () => [verifiedBy('old'), splitPolicy()],
    to: 'bob@example.com',
    verified: 'absent',
    want: 'accept primary:new:bob@example.com:Notify',
  },
  {
    row: 'Split: unknown on the primary with unknownRecipients Reject -> 550 5.1.1',
    objects: () => [withAccount('old', 'alice@example.com'), splitPolicy({ unknownRecipients: 'Reject' })],
    to: 'bob@example.com',
    want: 'reject 550 5.1.1',
  },
  {
    row: 'softBounce: Split Reject, unknown on the primary -> tempfail 450 4.1.1 (the sender keeps it queued)',
    objects: () => [withAccount('old', 'alice@example.com'), splitRejectSoft({ own: true })],
    to: 'bob@example.com',
    want: 'tempfail 450 4.1.1',
  },
  {
    row: 'softBounce: rejectUnknownRecipients, absent on every server -> tempfail 450 4.1.1',
    objects: () => [
      exampleDomain({ rejectUnknownRecipients: true, recipientVerification: { server: 'old' } }),
      examplePolicy({ mode: 'Direct', softBounce: true }),
    ],
    to: 'bob@example.com',
    verified: 'absent',
    want: 'tempfail 450 4.1.1',
  },
  {
    row: 'softBounce: a known recipient is routed as without it',
    objects: () => [withAccount('old', 'alice@example.com'), splitRejectSoft({ own: true })],
    to: 'alice@example.com',
    want: 'accept primary:old:alice@example.com:Notify',
  },
  {
    row: 'softBounce: a domain that is not declared is still 554 5.7.1 (soft bounce is per domain)',
    objects: () => [exampleDomain(), examplePolicy({ mode: 'Direct', softBounce: true })],
    to: 'alice@example.org',
    want: 'reject 554 5.7.1',
  },
  {
    row: 'softBounce in the stage in force -> 450 4.1.1, though the final state has none',
    objects: () => [
      withAccount('old', 'alice@example.com'),
      splitRejectSoft({ stage: { until: '2026-07-01T00:00:00Z', softBounce: true } }),
    ],
    to: 'bob@example.com',
    want: 'tempfail 450 4.1.1',
  },
  {
    row: 'softBounce in a stage that has ended -> 550 5.1.1 again',
    objects: () => [
      withAccount('old', 'alice@example.com'),
      splitRejectSoft({ stage: { until: '2026-05-01T00:00:00Z', softBounce: true } }),
    ],
    to: 'bob@example.com',
    want: 'reject 550 5.1.1',
  },
  {
    row: "softBounce of the policy's own fields is not inherited by the stage in force",
    objects: () => [
      withAccount('old', 'alice@example.com'),
      splitRejectSoft({ own: true, stage: { until: '2026-07-01T00:00:00Z', softBounce: false } }),
    ],
    to: 'bob@example.com',
    want: 'reject 550 5.1.1',
  },
  {
    row: 'postmaster (RFC 5321 §4.5.1): Split Reject with an accounts list that omits it -> primary',
    objects: () => [withAccount('old', 'alice@example.com'), splitPolicy({ unknownRecipients: 'Reject' })],
    to: 'PostMaster@example.com',
    want: 'accept primary:old:PostMaster@example.com:Notify',
  },
  {
    row: 'postmaster: rejectUnknownRecipients with lists on every server that omit it -> routed, no callout',
    objects: () => [
      exampleDomain({
        rejectUnknownRecipients: true,
        accounts: [
          { server: 'old', addresses: ['alice@example.com'] },
          { server: 'new', addresses: ['carol@example.com'] },
        ],
      }),
      dualPolicy(),
    ],
    to: 'postmaster@example.com',
    want: 'accept primary:old:postmaster@example.com:Notify copy:new:postmaster@example.com:Suppress',
  },
  {
    row: 'postmaster: Split with verification says absent -> still the primary (the callout is not asked)',
    objects: () => [verifiedBy('old'), splitPolicy()],
    to: 'postmaster@example.com',
    want: 'accept primary:old:postmaster@example.com:Notify',
  },
  {
    row: 'postmaster: a subaddress of it follows it (postmaster+dmarc)',
    objects: () => [withAccount('old', 'alice@example.com'), splitPolicy({ unknownRecipients: 'Reject' })],
    to: 'postmaster+dmarc@example.com',
    want: 'accept primary:old:postmaster+dmarc@example.com:Notify',
  },
  {
    row: 'postmaster is a whole local part: xpostmaster is an ordinary recipient',
    objects: () => [withAccount('old', 'alice@example.com'), splitPolicy({ unknownRecipients: 'Reject' })],
    to: 'xpostmaster@example.com',
    want: 'reject 550 5.1.1',
  },
  {
    row: 'postmaster is a whole local part: postmaster-x is an ordinary recipient ("-" is no delimiter by default)',
    objects: () => [withAccount('old', 'alice@example.com'), splitPolicy({ unknownRecipients: 'Reject' })],
    to: 'postmaster-x@example.com',
    want: 'reject 550 5.1.1',
  },
  {
    row: 'Split: not in the accounts list, verification says exists -> primary',
    objects: () => [
      exampleDomain({
        accounts: [{ server: 'old', addresses: ['alice@example.com'] }],
        recipientVerification: { server: 'old' },
      }),
      splitPolicy(),
    ],
    to: 'bob@example.com',
    verified: 'exists',
    want: 'accept primary:old:bob@example.com:Notify',
  },
  {
    row: 'Split: verification inconclusive -> tempfail 451 4.4.3 (never guesses)',
    objects: () => [verifiedBy('old'), splitPolicy()],
    to: 'bob@example.com',
    verified: 'unknown',
    want: 'tempfail 451 4.4.3',
  },
  {
    row: 'Split: no verification answer at all -> tempfail 451 4.4.3',
    objects: () => [verifiedBy('old'), splitPolicy({ unknownRecipients: 'Reject' })],
    to: 'bob@example.com',
    want: 'tempfail 451 4.4.3',
  },
  {
    row: 'any mode: domain not declared -> 554 5.7.1',
    objects: () => [exampleDomain(), examplePolicy({ mode: 'Direct' })],
    to: 'alice@example.org',
    want: 'reject 554 5.7.1',
  },
  {
    row: 'subdomain of a declared domain is not declared -> 554 5.7.1',
    objects: () => [exampleDomain(), examplePolicy({ mode: 'Direct' })],
    to: 'alice@sub.example.com',
    want: 'reject 554 5.7.1',
  },
  {
    row: 'declared domain without a policy -> tempfail 451 4.3.5',
    objects: () => [exampleDomain()],
    to: 'alice@example.com',
    want: 'tempfail 451 4.3.5',
  },
  {
    row: 'rejectUnknownRecipients: absent on every server -> 550 5.1.1',
    objects: () => [
      exampleDomain({
        rejectUnknownRecipients: true,
        accounts: [
          { server: 'old', addresses: ['alice@example.com'] },
          { server: 'new', addresses: ['carol@example.com'] },
        ],
      }),
      dualPolicy(),
    ],
    to: 'bob@example.com',
    want: 'reject 550 5.1.1',
  },
  {
    row: 'rejectUnknownRecipients: present on one server -> routed',
    objects: () => [
      exampleDomain({
        rejectUnknownRecipients: true,
        accounts: [
          { server: 'old', addresses: ['alice@example.com'] },
          { server: 'new', addresses: ['carol@example.com'] },
        ],
      }),
      dualPolicy(),
    ],
    to: 'carol@example.com',
    want: 'accept primary:old:carol@example.com:Notify copy:new:carol@example.com:Suppress',
  },
  {
    row: 'rejectUnknownRecipients: unknown somewhere (no list, no verification) -> routed',
    objects: () => [
      exampleDomain({
        rejectUnknownRecipients: true,
        accounts: [{ server: 'old', addresses: ['alice@example.com'] }],
      }),
      dualPolicy(),
    ],
    to: 'bob@example.com',
    want: 'accept primary:old:bob@example.com:Notify copy:new:bob@example.com:Suppress',
  },
  {
    row: 'rejectUnknownRecipients with Direct: verification says absent -> 550 5.1.1',
    objects: () => [
      exampleDomain({ rejectUnknownRecipients: true, recipientVerification: { server: 'old' } }),
      examplePolicy({ mode: 'Direct' }),
    ],
    to: 'bob@example.com',
    verified: 'absent',
    want: 'reject 550 5.1.1',
  },
  {
    row: 'rejectUnknownRecipients with Direct: verification inconclusive -> routed',
    objects: () => [
      exampleDomain({ rejectUnknownRecipients: true, recipientVerification: { server: 'old' } }),
      examplePolicy({ mode: 'Direct' }),
    ],
    to: 'bob@example.com',
    verified: 'unknown',
    want: 'accept primary:old:bob@example.com:Notify',
  },
  {
    row: 'rejectUnknownRecipients: an active TestRecipient is never refused',
    objects: () => [
      exampleDomain({
        rejectUnknownRecipients: true,
        accounts: [
          { server: 'old', addresses: [] },
          { server: 'new', addresses: [] },
        ],
      }),
      dualPolicy({ scope: 'TestRecipients' }),
      tr('bob', { address: 'bob@example.com' }),
    ],
    to: 'bob@example.com',
    want: 'accept primary:old:bob@example.com:Notify copy:new:bob@example.com:Suppress',
  },
  // Subaddressing (MailDomain.spec.recipientDelimiter, default '+'): lists name mailboxes, so alice+news is looked up
  // as itself, then as alice; legs carry the address as sent, and a TestRecipient's forwardTo gets the extension.
  {
    row: 'subaddress: a TestRecipient moved to the new server gets alice+news there, with the extension',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients' }),
      tr('alice', { address: 'alice@example.com', forwardTo: 'alice@zoho.example', keepPrimaryCopy: false }),
    ],
    to: 'Alice+News@example.com',
    want: 'accept primary:new:alice+News@zoho.example:Notify',
  },
  {
    row: 'subaddress: a TestRecipient with keepPrimaryCopy gets both legs; the primary keeps the address as sent',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients', copyRecipientDomain: 'zoho.example' }),
      tr('alice', { address: 'alice@example.com' }),
    ],
    to: 'alice+news@example.com',
    want: 'accept primary:old:alice+news@example.com:Notify copy:new:alice+news@zoho.example:Suppress',
  },
  {
    row: 'subaddress: a TestRecipient for the subaddress itself wins over its mailbox',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients' }),
      tr('alice', { address: 'alice@example.com', forwardTo: 'alice@zoho.example', keepPrimaryCopy: false }),
      tr('alice-news', { address: 'alice+news@example.com', forwardTo: 'news@zoho.example' }),
    ],
    to: 'alice+news@example.com',
    want: 'accept primary:old:alice+news@example.com:Notify copy:new:news@zoho.example:Suppress',
  },
  {
    row: 'subaddress: a forwardTo that has an extension of its own keeps it',
    objects: () => [
      exampleDomain(),
      dualPolicy({ scope: 'TestRecipients' }),
      tr('alice', { address: 'alice@example.com', forwardTo: 'alice+migrated@zoho.example' }),
    ],
    to: 'alice+news@example.com',
    want: 'accept primary:old:alice+news@example.com:Notify copy:new:alice+migrated@zoho.example:Suppress',
  },
  {
    row: 'subaddress: Split finds alice+news by the account alice on the primary',
    objects: () => [withAccount('old', 'alice@example.com'), splitPolicy()],
    to: 'alice+news@example.com',
    want: 'accept primary:old:alice+news@example.com:Notify',
  },
  {
    row: 'subaddress: Dual scope Accounts copies alice+news when alice has an account on the secondary',
    objects: () => [withAccount('new', 'alice@example.com'), dualPolicy({ scope: 'Accounts' })],
    to: 'alice+news@example.com',
    want: 'accept primary:old:alice+news@example.com:Notify copy:new:alice+news@example.com:Suppress',
  },
  {
    row: 'subaddress: verification asks about the address as sent (the server knows its own subaddressing)',
    objects: () => [verifiedBy('old'), splitPolicy()],
    to: 'alice+news@example.com',
    verified: 'absent',
    asks: 'old:alice+news@example.com',
    want: 'accept primary:new:alice+news@example.com:Notify',
  },
  {
    row: 'subaddress: rejectUnknownRecipients does not refuse alice+news when alice is listed',
    objects: () => [
      exampleDomain({
        rejectUnknownRecipients: true,
        accounts: [
          { server: 'old', addresses: ['alice@example.com'] },
          { server: 'new', addresses: [] },
        ],
      }),
      dualPolicy(),
    ],
    to: 'alice+news@example.com',
    want: 'accept primary:old:alice+news@example.com:Notify copy:new:alice+news@example.com:Suppress',
  },
  {
    row: 'subaddress: recipientDelimiter "" turns it off (alice+news is unknown on the primary)',
    objects: () => [
      exampleDomain({
        recipientDelimiter: '',
        accounts: [{ server: 'old', addresses: ['alice@example.com'] }],
      }),
      splitPolicy(),
    ],
    to: 'alice+news@example.com',
    want: 'accept primary:new:alice+news@example.com:Notify',
  },
  {
    row: 'subaddress: each character of recipientDelimiter is one (alice-news with "+-")',
    objects: () => [
      exampleDomain({
        recipientDelimiter: '+-',
        accounts: [{ server: 'old', addresses: ['alice@example.com'] }],
      }),
      splitPolicy(),
    ],
    to: 'alice-news@example.com',
    want: 'accept primary:old:alice-news@example.com:Notify',
  },
  {
    row: 'subaddress: "-" is no delimiter by default (mary-jane is not mary)',
    objects: () => [withAccount('old', 'mary@example.com'), splitPolicy()],
    to: 'mary-jane@example.com',
    want: 'accept primary:new:mary-jane@example.com:Notify',
  },
  {
    row: 'subaddress: a local part that starts with the delimiter has no mailbox to find',
    objects: () => [withAccount('old', 'alice@example.com'), splitPolicy()],
    to: '+alice@example.com',
    want: 'accept primary:new:+alice@example.com:Notify',
  },
];

describe('resolve: the semantics table', () => {
  it.each(rows)('$row', ({ objects, to, verified, asks, want }) => {
    const idx = index(objects());
    const asked: string[] = [];
    const plan = resolve(idx, to, {
      now: NOW,
      ...(verified !== undefined
        ? {
            verified: (server: string, address: string) => {
              asked.push(`${server}:${address}`);
              return verified;
            },
          }
        : {}),
    });
    expect(brief(plan)).toBe(want);
    if (verified !== undefined) expect(asked.length).toBeGreaterThan(0);
    if (asks !== undefined) expect(asked).toEqual([asks]);
    // verificationNeeded predicts whether resolve consults the callout, in every row: the first server and address
    // a resolve with a callout asks about, and undefined exactly when it asks nobody
    const consulted: string[] = [];
    resolve(idx, to, {
      now: NOW,
      verified: (server, address) => {
        consulted.push(`${server}:${address}`);
        return 'unknown';
      },
    });
    const need = verificationNeeded(idx, to, { now: NOW });
    expect(need && `${need.server}:${need.address}`).toBe(consulted[0]);
  });
});

describe('softBounceFor: the soft bounce a leg of a queued message is decided with', () => {
  const direct = (extra: Record<string, unknown>, domain: Record<string, unknown> = {}) =>
    index([exampleDomain(domain), examplePolicy({ mode: 'Direct', ...extra })]);
  const on = direct({ softBounce: true });
  const idn = direct({ softBounce: true }, { domain: 'xn--mnchen-3ya.test' });
  const staged = (until: string) => direct({ stages: [cutoverStage(until, { primary: 'old' })] });
  it.each([
    ['on in the policy', on, 'bob@example.com', true],
    ['the domain in capitals', on, 'bob@EXAMPLE.COM', true],
    ['off in the policy', direct({}), 'bob@example.com', false],
    ['a domain outside the table (a DSN to an outside sender)', on, 'bob@example.org', false],
    ['a domain without a policy', index([exampleDomain()]), 'bob@example.com', false],
    ['no @ at all', on, 'example.com', false],
    ['an IDN domain as its A-label (an accepted recipient)', idn, 'bob@xn--mnchen-3ya.test', true],
    [
      'an IDN domain in Unicode (an SMTPUTF8 recipient, `mailroute route --to`)',
      idn,
      'bob@münchen.test',
      true,
    ],
    ['a stage in force with it', staged('2026-07-01T00:00:00Z'), 'bob@example.com', true],
    ['a stage that ended', staged('2026-05-01T00:00:00Z'), 'bob@example.com', false],
  ])('%s', (_name, idx, recipient, want) => {
    expect(softBounceFor(idx, recipient, NOW)).toBe(want);
  });
});

describe('explainRoute: the lookups resolve() makes, told', () => {
  const idx = index([
    exampleDomain(),
    dualPolicy({ scope: 'TestRecipients', bounces: 'Suppress' }),
    tr('alice', { address: 'alice@example.com' }),
    tr('alice-news', { address: 'alice+news@example.com', keepPrimaryCopy: false }),
    tr('bob', { address: 'bob@example.com', expiresAt: '2026-01-01T00:00:00Z' }),
  ]);
  it.each<[string, { source: string; address: string; byMailbox: boolean; active: boolean } | undefined]>([
    [
      'alice@example.com',
      { source: 'default/alice', address: 'alice@example.com', byMailbox: false, active: true },
    ],
    [
      'Alice+Other@Example.com',
      { source: 'default/alice', address: 'alice@example.com', byMailbox: true, active: true },
    ],
    // an entry of its own wins over its mailbox's
    [
      'alice+news@example.com',
      { source: 'default/alice-news', address: 'alice+news@example.com', byMailbox: false, active: true },
    ],
    [
      'bob@example.com',
      { source: 'default/bob', address: 'bob@example.com', byMailbox: false, active: false },
    ],
    ['carol@example.com', undefined],
  ])('%s', (to, want) => {
    const e = explainRoute(idx, to, NOW);
    expect(e?.testRecipient).toEqual(want);
    expect(e).toMatchObject({
      policy: 'default/example-com',
      mode: 'Dual',
      dual: { scope: 'TestRecipients' },
    });
    // and it agrees with the plan: the legs carry the TestRecipient it names, when active
    const plan = resolve(idx, to, { now: NOW });
    const tags = plan.verdict === 'accept' ? plan.legs.map((l) => l.testRecipient) : [];
    expect(tags[0]).toBe(want?.active === true ? want.source : undefined);
  });

  it('finds the TestRecipient of an IDN domain when the address is written in Unicode, by its mailbox', () => {
    const idn = index([
      exampleDomain({ domain: 'xn--mnchen-3ya.test' }),
      dualPolicy({ scope: 'TestRecipients', bounces: 'Suppress' }),
      tr('bob', { address: 'bob@xn--mnchen-3ya.test' }),
    ]);
    expect(explainRoute(idn, 'Bob+x@münchen.test', NOW)?.testRecipient).toEqual({
      source: 'default/bob',
      address: 'bob@xn--mnchen-3ya.test',
      byMailbox: true,
      active: true,
    });
  });

  it('is undefined outside the table and for a bad address', () => {
    expect(explainRoute(idx, 'a@example.org', NOW)).toBeUndefined();
    expect(explainRoute(idx, 'not an address', NOW)).toBeUndefined();
  });
});

describe('mailboxOf', () => {
  const idx = index([exampleDomain(), examplePolicy({ mode: 'Direct' })]);
  const off = index([exampleDomain({ recipientDelimiter: '' }), examplePolicy({ mode: 'Direct' })]);
  it.each([
    ['alice+news@example.com', idx, 'alice@example.com'],
    ['alice+a+b@example.com', idx, 'alice@example.com'],
    ['alice@example.com', idx, undefined],
    ['+alice@example.com', idx, undefined],
    ['"alice+x"@example.com', idx, 'alice@example.com'], // a quoted dot-atom is the same address unquoted
    ['"alice x+y"@example.com', idx, undefined],
    ['alice+news@example.org', idx, undefined],
    ['alice+news@example.com', off, undefined],
    ['not an address', idx, undefined],
  ])('%s -> %s', (to, i, want) => {
    expect(mailboxOf(i, to)).toBe(want);
  });
});

describe('resolve: hostile and odd addresses', () => {
  const idx = () => index([exampleDomain(), dualPolicy()]);

  it.each([
    'user%other.com@example.com',
    'other.com!user@example.com',
    '"user@other.com"@example.com',
    '"user%other.com"@example.com',
  ])('%s stays at example.com', (to) => {
    const plan = resolve(idx(), to, { now: NOW });
    expect(plan.verdict).toBe('accept');
    if (plan.verdict !== 'accept') return;
    expect(plan.domain).toBe('example.com');
    for (const l of plan.legs) {
      expect(['10.0.0.1', '10.0.0.2']).toContain(l.server.host);
      expect(l.recipient.endsWith('@example.com')).toBe(true);
    }
  });

  it.each([
    ['', 553],
    ['alice', 553],
    ['@example.com', 553],
    ['alice@', 553],
    ['@relay.example:alice@example.com', 553],
    ['@a,@b:alice@example.com', 553],
    ['alice@example.com@other.com', 553],
    ['alice@other.com@example.com', 553],
    ['a b@example.com', 553],
    ['alice@exa mple.com', 553],
    ['alice@-example.com', 553],
    ['"unterminated@example.com', 553],
    ['a\r\nRCPT TO:<b>@example.com', 553],
    [`${'a'.repeat(65)}@example.com`, 553],
    [`a@${'b'.repeat(250)}.com`, 553],
    ['alice@[192.0.2.1]', 554],
    ['alice@example.com.', 553],
  ])('%j is refused with %d', (to, code) => {
    const plan = resolve(idx(), to, { now: NOW });
    expect(plan.verdict).toBe('reject');
    if (plan.verdict === 'reject') expect(plan.reply.code).toBe(code);
    expect(plan.legs).toEqual([]);
  });

  it('accepts angle brackets and quoted dot-atoms', () => {
    expect(brief(resolve(idx(), '<alice@example.com>', { now: NOW }))).toContain(
      'primary:old:alice@example.com',
    );
    expect(brief(resolve(idx(), '"alice"@example.com', { now: NOW }))).toContain(
      'primary:old:alice@example.com',
    );
  });
});

describe('parseAddress', () => {
  it.each([
    ['Alice@Example.COM', 'Alice', 'example.com', 'alice@example.com'],
    ['"a b"@example.com', '"a b"', 'example.com', '"a b"@example.com'],
    ['"alice"@example.com', 'alice', 'example.com', 'alice@example.com'],
    ['ünïcode@example.com', 'ünïcode', 'example.com', 'ünïcode@example.com'],
  ])('%s', (input, local, domain, key) => {
    const p = parseAddress(input);
    expect(p).toMatchObject({ ok: true, local, domain, key });
  });
});

describe('verificationNeeded', () => {
  it('is undefined when the answer is already known or irrelevant', () => {
    const idx = index([
      exampleDomain({
        accounts: [{ server: 'old', addresses: ['alice@example.com'] }],
        recipientVerification: { server: 'old', cacheTTL: '10m' },
      }),
      splitPolicy(),
    ]);
    expect(verificationNeeded(idx, 'alice@example.com')).toBeUndefined();
    expect(verificationNeeded(idx, 'bob@example.org')).toBeUndefined();
    expect(verificationNeeded(idx, 'Bob@Example.com')).toEqual({
      server: 'old',
      address: 'Bob@example.com',
      cacheTTLSeconds: 600,
    });
  });

  it('asks about the address that will be delivered: the copy address for scope Accounts, the own one for Split', () => {
    const accounts = index([
      exampleDomain({ recipientVerification: { server: 'new', cacheTTL: '1h' } }),
      dualPolicy({ scope: 'Accounts', copyRecipientDomain: 'zoho-test.example' }),
    ]);
    expect(verificationNeeded(accounts, 'bob@example.com')).toEqual({
      server: 'new',
      address: 'bob@zoho-test.example',
      cacheTTLSeconds: 3600,
    });
    const split = index([
      exampleDomain({ recipientVerification: { server: 'old', cacheTTL: '1h' } }),
      splitPolicy(),
    ]);
    expect(verificationNeeded(split, 'bob@example.com')?.address).toBe('bob@example.com');
    // rejectUnknownRecipients asks the secondary about the copy address too
    const reject = index([
      exampleDomain({
        rejectUnknownRecipients: true,
        accounts: [{ server: 'old', addresses: [] }],
        recipientVerification: { server: 'new', cacheTTL: '1h' },
      }),
      dualPolicy({ scope: 'All', copyRecipientDomain: 'zoho-test.example' }),
    ]);
    expect(verificationNeeded(reject, 'bob@example.com')?.address).toBe('bob@zoho-test.example');
  });

  it('is undefined for Direct without rejectUnknownRecipients', () => {
    const idx = index([verifiedBy('old'), examplePolicy({ mode: 'Direct' })]);
    expect(verificationNeeded(idx, 'bob@example.com')).toBeUndefined();
  });
});

describe('planToJson', () => {
  it('has the route -o json shape', () => {
    const idx = index([exampleDomain(), dualPolicy()]);
    expect(planToJson(resolve(idx, 'alice@example.com', { now: NOW }))).toEqual({
      recipient: 'alice@example.com',
      verdict: 'accept',
      reply: '250 2.1.5 recipient ok',
      legs: [
        {
          server: 'old',
          host: '10.0.0.1',
          port: 25,
          recipient: 'alice@example.com',
          role: 'primary',
          bounces: 'Notify',
          record: true,
        },
        {
          server: 'new',
          host: '10.0.0.2',
          port: 2525,
          recipient: 'alice@example.com',
          role: 'copy',
          bounces: 'Suppress',
          record: false,
        },
      ],
    });
    expect(planToJson(resolve(idx, 'alice@example.org', { now: NOW }))).toEqual({
      recipient: 'alice@example.org',
      verdict: 'reject',
      reply: '554 5.7.1 relay access denied',
      legs: [],
    });
  });
});
