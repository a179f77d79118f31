// What each recipient is told: failures built as nodemailer's _formatError builds its errors map to the same
// AttemptReply as nodemailer's errors did (repliesFromNodemailer in relay/delivery/transport.ts, the mapping of the
// client this one replaces), and transaction results to one reply per recipient of the request.
import { describe, expect, it } from 'vitest';
import { unreachable, type AttemptReply } from '../outcome.ts';
import { reachability } from '../recovery.ts';
import { repliesFromNodemailer } from '../transport.ts';
import {
  failureReply,
  isTransient,
  smtpFailure,
  transactionReplies,
  type SmtpFailure,
  type TransactionResult,
} from './replies.ts';

describe('failureReply: the reply nodemailer’s error for the same situation gave', () => {
  it.each([
    ['connection refused', smtpFailure('ESOCKET', 'connect ECONNREFUSED 127.0.0.1:1'), 'network'],
    ['closed under us', smtpFailure('ECONNECTION', 'Connection closed unexpectedly'), 'network'],
    [
      'closed with a failure reply left',
      smtpFailure('ECONNECTION', 'Connection closed unexpectedly', '421 bye'),
      'smtp',
    ],
    ['greeting timeout', smtpFailure('ETIMEDOUT', 'Greeting never received'), 'network'],
    ['AUTH refused', smtpFailure('EAUTH', 'Invalid login', '535 5.7.8 authentication failed'), 'local'],
    [
      'STARTTLS refused',
      smtpFailure('ETLS', 'Error upgrading connection with STARTTLS', '454 4.7.0 no TLS'),
      'local',
    ],
    ['TLS closed', smtpFailure('ETLS', 'Connection closed unexpectedly'), 'local'],
    [
      'MAIL refused',
      smtpFailure('EENVELOPE', 'Mail command failed', '550-5.7.1 no\n550 5.7.1 really'),
      'smtp',
    ],
    ['message refused', smtpFailure('EMESSAGE', 'Message failed', '554 5.6.0 spam'), 'smtp'],
    ['pool closed with sends waiting', smtpFailure(undefined, 'Connection pool was closed'), 'network'],
  ] as const)('%s', (_what, f, kind) => {
    const mine = failureReply(f);
    expect(mine.kind).toBe(kind);
    // nodemailer's error has the same fields (its message carries the reply the same way)
    const theirs = repliesFromNodemailer(['r@x'], { ...f }, undefined).get('r@x');
    expect(mine).toEqual(theirs);
  });

  it('unlike nodemailer: over the SIZE limit is a permanent 552, an unreadable body file is local', () => {
    // nodemailer made both 'network': retried for days and the destination suspended for every other message
    const big = smtpFailure(
      'EMESSAGE',
      'Message size larger than allowed',
      '552 5.3.4 message size 101 exceeds size limit 100 of server mx.example',
    );
    expect(failureReply(big)).toEqual({
      kind: 'smtp',
      code: 552,
      text: '552 5.3.4 message size 101 exceeds size limit 100 of server mx.example',
    });
    expect(failureReply(smtpFailure('ESTREAM', "ENOENT: no such file or directory, open '/x'"))).toEqual({
      kind: 'local',
      text: "ESTREAM: ENOENT: no such file or directory, open '/x'",
    });
  });

  it.each([
    [
      '554 5.7.1 too many connections from your IP, try later',
      'EGREETING: Session refused at the greeting: 554 5.7.1 too many connections from your IP, try later',
    ],
    ['421 4.3.2 busy, closing', 'EGREETING: Session refused at the greeting: 421 4.3.2 busy, closing'],
    // a 2xx that is not 220 must not read as a delivery
    ['250 hello', 'EGREETING: Invalid greeting: 250 hello'],
  ])(
    'unlike nodemailer: a greeting of %j is network, its text kept (the next host is tried; no host: deferred, never bounced)',
    (greeting, text) => {
      const why = /^[45]/.test(greeting) ? 'Session refused at the greeting' : 'Invalid greeting';
      expect(failureReply(smtpFailure('EGREETING', why, greeting))).toEqual({ kind: 'network', text });
      // nodemailer's EPROTOCOL for it was the server's reply: a 554 bounced the mail, a 250 delivered it
      const theirs = repliesFromNodemailer(
        ['r@x'],
        smtpFailure('EPROTOCOL', `Invalid greeting. response=${greeting}`, greeting),
        undefined,
      ).get('r@x');
      expect(theirs).toMatchObject({ kind: 'smtp', code: Number(greeting.slice(0, 3)) });
    },
  );

  it.each([
    [
      'STARTTLS refused',
      'host mx1.example[192.0.2.1] refused to start TLS',
      '454 4.7.0 TLS not available due to local problem',
    ],
    [
      'EHLO refused (HELO has no STARTTLS)',
      'was not offered by host 192.0.2.1 (EHLO refused)',
      '502 5.5.2 what?',
    ],
    ['a failed handshake', 'the TLS handshake with host 192.0.2.1 failed: wrong version number', undefined],
  ] as const)(
    'unlike nodemailer: TLS required that a host cannot give (%s) is network, its text kept (next host; never local, never bounced)',
    (_, why, reply) => {
      const f: SmtpFailure = {
        ...smtpFailure('ETLS', `TLS is required, but ${why}`, reply),
        tlsRequired: true,
      };
      const mine = failureReply(f);
      expect(mine).toEqual({ kind: 'network', text: `ETLS: ${f.message}` });
      // the next address or MX host is tried for it (outcome.ts unreachable, attempt.ts) and its destination counts
      // down when no host takes the message
      expect(unreachable([mine])).toBe(true);
      expect(reachability([mine])).toBe('down');
      // the same failure without the mark stays what it was: ETLS is local (nodemailer's mapping)
      const { tlsRequired: _mark, ...plain } = f;
      expect(failureReply(plain)).toEqual(repliesFromNodemailer(['r@x'], { ...plain }, undefined).get('r@x'));
      expect(failureReply(plain).kind).toBe('local');
      // this host short of a resource in the middle of it stays local (not the server's failure, nothing suspended)
      expect(failureReply({ ...f, errno: 'ENOBUFS' }).kind).toBe('local');
    },
  );

  it('a refused greeting counts its destination down, as a 421 does (recovery: woken when it answers again)', () => {
    const banner = smtpFailure(
      'EGREETING',
      'Session refused at the greeting',
      '554 5.7.1 too many connections',
    );
    expect(reachability([failureReply(banner)])).toBe('down');
    expect(
      reachability([failureReply(smtpFailure('EENVELOPE', 'Mail command failed', '421 4.3.2 bye'))]),
    ).toBe('down');
    // an smtp 4xx made of it (the other way to represent it) would have counted as an answer
    expect(reachability([{ kind: 'smtp', code: 454, text: '454 4.7.1 too many connections' }])).toBe('up');
  });

  it.each(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRNOTAVAIL'])(
    'unlike nodemailer: a socket that fails with %s (this host short of a resource) is local, so the destination is not suspended',
    (errno) => {
      const f = {
        ...smtpFailure('ESOCKET', `connect ${errno} 127.0.0.1:25 - Local (undefined:undefined)`),
        errno,
      };
      expect(failureReply(f)).toEqual({
        kind: 'local',
        text: `ESOCKET: connect ${errno} 127.0.0.1:25 - Local (undefined:undefined)`,
      });
      // the server's own failure stays network
      expect(
        failureReply({ ...smtpFailure('ESOCKET', 'connect ECONNREFUSED'), errno: 'ECONNREFUSED' }).kind,
      ).toBe('network');
    },
  );

  it('texts as the leg records them', () => {
    expect(failureReply(smtpFailure('ESOCKET', 'connect ECONNREFUSED 127.0.0.1:1'))).toEqual({
      kind: 'network',
      text: 'ESOCKET: connect ECONNREFUSED 127.0.0.1:1',
    });
    expect(failureReply(smtpFailure('EAUTH', 'Invalid login', '535 5.7.8 nope'))).toEqual({
      kind: 'local',
      text: 'EAUTH: Invalid login: 535 5.7.8 nope',
    });
    expect(failureReply(smtpFailure('EMESSAGE', 'Message failed', '554 5.6.0 spam'))).toEqual({
      kind: 'smtp',
      code: 554,
      text: '554 5.6.0 spam',
    });
  });

  it.each([
    [smtpFailure('ECONNECTION', 'x'), true],
    [smtpFailure('ESOCKET', 'x'), true],
    [smtpFailure('ETIMEDOUT', 'x'), true],
    [smtpFailure('EENVELOPE', 'Mail command failed', '421 4.3.2 bye'), true],
    [smtpFailure('EENVELOPE', 'Mail command failed', '450 busy'), false],
    [smtpFailure('EAUTH', 'Invalid login', '535 no'), false],
    [smtpFailure('ETLS', 'x'), false],
  ])('isTransient(%j) = %s', (f, transient) => {
    expect(isTransient(f)).toBe(transient);
  });
});

const rcpt = (recipient: string, response: string): { recipient: string; failure: SmtpFailure } => ({
  recipient,
  failure: smtpFailure('EENVELOPE', 'Recipient command failed', response),
});

describe('transactionReplies', () => {
  const recipients = ['a@x.example', 'B@x.example', 'c@bücher.example', 'broken'];
  // as the EnvelopeShaper makes them: the IDN domain in A-labels, an address it cannot parse dropped
  const addresses = [['a@x.example'], ['B@x.example'], ['c@xn--bcher-kva.example'], []];
  const table = (result: TransactionResult): Record<string, [string, number]> =>
    Object.fromEntries(
      [...transactionReplies(recipients, addresses, result)].map(([r, reply]: [string, AttemptReply]) => [
        r,
        [reply.kind, reply.kind === 'smtp' ? reply.code : 0],
      ]),
    );

  it.each([
    [
      'all accepted: the final reply for each (an address the shaper dropped got no reply)',
      {
        ok: true,
        response: '250 2.0.0 queued as X',
        accepted: ['a@x.example', 'B@x.example', 'c@xn--bcher-kva.example'],
        rejected: [],
      },
      {
        'a@x.example': ['smtp', 250],
        'B@x.example': ['smtp', 250],
        'c@bücher.example': ['smtp', 250],
        broken: ['local', 0],
      },
    ],
    [
      'one refused at RCPT: its own refusal',
      {
        ok: true,
        response: '250 ok',
        accepted: ['a@x.example', 'c@xn--bcher-kva.example'],
        rejected: [rcpt('B@x.example', '550 5.1.1 unknown')],
      },
      {
        'a@x.example': ['smtp', 250],
        'B@x.example': ['smtp', 550],
        'c@bücher.example': ['smtp', 250],
        broken: ['local', 0],
      },
    ],
    [
      'all refused: each its own refusal',
      {
        ok: false,
        failure: smtpFailure('EENVELOPE', "Can't send mail - all recipients were rejected", '450 busy'),
        rejected: [
          rcpt('a@x.example', '450 busy'),
          rcpt('B@x.example', '550 no'),
          rcpt('c@xn--bcher-kva.example', '551 no'),
        ],
      },
      {
        'a@x.example': ['smtp', 450],
        'B@x.example': ['smtp', 550],
        'c@bücher.example': ['smtp', 551],
        broken: ['smtp', 450],
      },
    ],
    [
      // Postfix: the end-of-data reply is for the recipients the server accepted; a refused one keeps its own
      'the final reply refused (552) after one was greylisted at RCPT (450): the greylisted one keeps its 450',
      {
        ok: false,
        failure: smtpFailure('EMESSAGE', 'Message failed', '552 5.2.2 <a@x.example>: mailbox full'),
        rejected: [rcpt('B@x.example', '450 4.7.1 greylisted')],
      },
      {
        'a@x.example': ['smtp', 552],
        'B@x.example': ['smtp', 450],
        'c@bücher.example': ['smtp', 552],
        broken: ['smtp', 552],
      },
    ],
    [
      'the final reply deferred (451) after one was refused at RCPT (550): the refused one keeps its 550',
      {
        ok: false,
        failure: smtpFailure('EMESSAGE', 'Message failed', '451 4.3.0 try again later'),
        rejected: [rcpt('c@xn--bcher-kva.example', '550 5.1.1 unknown')],
      },
      {
        'a@x.example': ['smtp', 451],
        'B@x.example': ['smtp', 451],
        'c@bücher.example': ['smtp', 550],
        broken: ['smtp', 451],
      },
    ],
    [
      'the connection lost after a refusal at RCPT: the refusal stays, the rest get the failure',
      {
        ok: false,
        failure: smtpFailure('ECONNECTION', 'Connection closed unexpectedly'),
        rejected: [rcpt('a@x.example', '550 5.1.1 unknown')],
      },
      {
        'a@x.example': ['smtp', 550],
        'B@x.example': ['network', 0],
        'c@bücher.example': ['network', 0],
        broken: ['network', 0],
      },
    ],
    [
      'a failure: the same reply for everyone',
      { ok: false, failure: smtpFailure('ECONNECTION', 'Connection closed unexpectedly'), rejected: [] },
      {
        'a@x.example': ['network', 0],
        'B@x.example': ['network', 0],
        'c@bücher.example': ['network', 0],
        broken: ['network', 0],
      },
    ],
  ] as const)('%s', (_what, result, want) => {
    expect(table(result as TransactionResult)).toEqual(want);
  });
});
