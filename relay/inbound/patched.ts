// The relay depends on patches/smtp-server+3.21.6.patch (applied by patch-package in postinstall and in the
// Dockerfile). Without it mail is lost, not merely slower: every sender at a punycode domain would get 553 5.6.7 and
// managed xn-- domains could not receive mail (the end-of-DATA search is the one part that is only about speed). So
// the relay probes each patched behaviour at start and refuses to run without it (an install with --ignore-scripts
// and no explicit patch-package step).
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { assertPatched } from '../patch-check.ts';

type ParseAddress = (this: unknown, name: string, command: string) => { address: string } | false;

/** The patched behaviours that are missing (empty when smtp-server is patched). */
export function smtpServerPatchProblems(): string[] {
  const problems: string[] = [];
  const proto = SMTPConnection.prototype as unknown as Record<string, unknown>;
  if (!String(proto['init']).includes('greetingDelay')) problems.push('greetingDelay option');
  if (typeof proto['_dataOkReply'] !== 'function') problems.push('DATA reply with its own enhanced code');
  const parse = proto['_parseAddressCommand'] as ParseAddress;
  const probe = {
    _server: { options: { decodePunycode: false }, logger: { error: () => undefined } },
    session: {},
    id: 'probe',
  };
  const parsed = parse.call(probe, 'MAIL FROM', 'MAIL FROM:<a@xn--bcher-kva.example>');
  if (parsed === false || parsed.address !== 'a@xn--bcher-kva.example')
    problems.push('decodePunycode: false (A-label domains kept as sent)');
  if (typeof (new SMTPStream() as { lineStartedAt?: unknown }).lineStartedAt !== 'number')
    problems.push('SMTPStream.lineStartedAt (command line timing)');
  // on the clock the relay's sweep reads (server.ts): an earlier patch stamped it with the wall clock
  else if (
    !String((SMTPStream.prototype as unknown as Record<string, unknown>)['_write']).includes(
      'lineStartedAt = performance.now()',
    )
  )
    problems.push('SMTPStream.lineStartedAt on the monotonic clock');
  // a speed patch (the same results as the per-byte loop: relay/inbound/data-end.fuzz.test.ts); checked so that an
  // install without the patch does not quietly spend 3-4 times the CPU per message on finding the end of DATA
  const feed = (SMTPStream.prototype as unknown as Record<string, unknown>)['_feedDataStream'];
  if (!String(feed).includes('chunk.indexOf(0x2e'))
    problems.push('SMTPStream end-of-DATA search by Buffer.indexOf');
  // the same for the bytes held back at a chunk's end: sent on alone, not copied in front of the next chunk
  if (!String(feed).includes('dotLineAtSeam(held, chunk)'))
    problems.push('SMTPStream sends held-back bytes on without copying the next chunk');
  // a resource patch: the escape dots of a chunk cut out in one pass, not one write and one event-loop turn per dot;
  // without it a body of `..` lines costs about ten short-lived objects per line (test/relay/big-message.test.ts)
  if (!String(feed).includes('outLen += chunk.copy(out, outLen, from, i)'))
    problems.push('SMTPStream cuts the escape dots of a chunk out in one pass');
  // a resource patch: after QUIT a plain connection is closed at once, so a client that lingers or resets does not
  // hold its slot (and a reset does not end in a read error) for up to 5 s
  if (!String(proto['handler_QUIT']).includes('writableLength === 0'))
    problems.push('QUIT closes a plain connection once the 221 is sent');
  // a client that half-closed after its last command (allowHalfOpen, server.ts) still gets its replies: without it
  // the 250 of a message pipelined with the client's FIN was never sent, and the client sent the message again
  if (!String(proto['send']).includes("readyState === 'writeOnly'"))
    problems.push('send() answers a client that half-closed');
  // a speed patch: connection ids cut from a pool of random bytes, not one randomBytes call per connection
  const server = SMTPServer.prototype as unknown as Record<string, unknown>;
  if (!String(server['_handleProxy']).includes('connectionId()'))
    problems.push('SMTPServer connection ids from a pool of random bytes');
  return problems;
}

/** Throws when smtp-server lacks a patched behaviour the relay relies on. */
export function assertSmtpServerPatched(): void {
  assertPatched('smtp-server', 'patches/smtp-server+3.21.6.patch', smtpServerPatchProblems());
}
