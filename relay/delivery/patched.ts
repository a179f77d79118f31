// nodemailerTransportFactory (relay/delivery/transport.ts: the benchmark's floor; the delivery path and the drain's
// hand-off have their own client, smtp-out/, which encodes as the patched encoder does) depends on
// patches/nodemailer+10.6.1.patch (applied by patch-package in postinstall and in the Dockerfile), which changes
// nodemailer's SMTP DATA encoder (smtp-connection/data-stream.js) and client (smtp-connection/index.js) in three ways
// that keep the bytes on the wire (relay/delivery/dot-stuffing.test.ts checks them against the original algorithm):
//   - it visits only the bytes that can need an insert (CR, LF, dot), found with indexOf, instead of every byte;
//   - it holds the last encoded chunk back and sends it together with the final dot line, one socket write per leg
//     fewer; a last chunk over 16 KiB goes on as it is and the dot line after it, since copying a large body (twice
//     per message, one per leg) cost more than the write it saved (docs/perf.md).
//   - a body the caller holds whole in memory (readSource's `mailrouteBody`) is encoded in one call
//     (DataStream.encode: what the stream would push) and written with the socket corked, instead of being piped
//     through the encoder stream: one system call and no stream pipeline per leg (the stream is read once, so that
//     the pool still knows the message was sent and does not requeue it on another connection).
// All are only about speed, but an install without them (--ignore-scripts and no patch-package step) would quietly
// spend several times the CPU on large mail, so nodemailerTransportFactory probes them and refuses to run without
// them, as the relay does for smtp-server (relay/inbound/patched.ts).
import type { Transform } from 'node:stream';
import { assertPatched } from '../patch-check.ts';

// The encoder nodemailer's pool uses, and its SMTP client: its ESM build, which nodemailer's package exports do not
// list on their own.
const dataStreamUrl = new URL('./smtp-connection/data-stream.js', import.meta.resolve('nodemailer')).href;
const { default: DataStream } = (await import(dataStreamUrl)) as { default: new () => Transform };
const connectionUrl = new URL('./smtp-connection/index.js', import.meta.resolve('nodemailer')).href;
const { default: SMTPConnection } = (await import(connectionUrl)) as { default: { prototype: object } };

/** The whole-body encoder the patch adds, as the client calls it. */
type WholeEncoder = (body: Buffer) => Buffer[];

type Encoder = Transform & {
  _transform(chunk: Buffer, encoding: string, done: (err?: Error | null) => void): void;
  _flush(done: (err?: Error | null) => void): void;
};

/**
 * The patched behaviours that are missing from this DATA encoder class and SMTP client (empty when they are patched).
 */
export function nodemailerPatchProblems(
  Encoder: new () => Transform = DataStream,
  Client: { prototype: object } = SMTPConnection,
): string[] {
  const problems: string[] = [];
  const proto = Encoder.prototype as unknown as Record<string, unknown>;
  if (!String(proto['_transform']).includes('nextDot'))
    problems.push('DATA encoder search by Buffer.indexOf');
  // Behaviour, not text: encode one chunk and finish, catching what the encoder pushes (all of it synchronous).
  const probe = new Encoder() as Encoder;
  const pushed: string[] = [];
  probe.push = (chunk: unknown): boolean => {
    if (Buffer.isBuffer(chunk)) pushed.push(chunk.toString('latin1'));
    return true;
  };
  try {
    probe._transform(Buffer.from('a\n.b'), 'buffer', () => undefined);
    probe._flush(() => undefined);
  } catch {
    /* reported below */
  }
  if (pushed.join('') !== 'a\r\n..b\r\n.\r\n') problems.push('DATA encoder output (dot-stuffing, line ends)');
  else if (pushed.length !== 1)
    problems.push('DATA encoder sends the last chunk and the final dot line in one write');
  // A large last chunk: pushed as the very buffer written (nothing to stuff), then the dot line.
  const large = Buffer.alloc(20 * 1024, 0x61);
  const big = new Encoder() as Encoder;
  const out: Buffer[] = [];
  big.push = (chunk: unknown): boolean => {
    if (Buffer.isBuffer(chunk)) out.push(chunk);
    return true;
  };
  try {
    big._transform(large, 'buffer', () => undefined);
    big._flush(() => undefined);
  } catch {
    /* reported below */
  }
  if (out.length !== 2 || out[0] !== large || out[1]?.toString('latin1') !== '\r\n.\r\n')
    problems.push('DATA encoder sends a large last chunk uncopied, then the final dot line');
  // The whole-body path: the encoder's one-call form, and the client that uses it (text: a behaviour probe would need
  // a server; test/relay/outbound-body.test.ts sends through it).
  const encode = (Encoder as unknown as { encode?: unknown }).encode;
  const whole = typeof encode === 'function' ? (encode as WholeEncoder) : undefined;
  let encoded: string[] = [];
  try {
    encoded = whole?.(Buffer.from('a\n.b')).map((b) => b.toString('latin1')) ?? [];
  } catch {
    /* reported below */
  }
  if (encoded.length !== 1 || encoded[0] !== 'a\r\n..b\r\n.\r\n')
    problems.push('DATA encoder encodes a whole body in one call (DataStream.encode)');
  const send = (Client.prototype as Record<string, unknown>)['send'];
  if (!String(send).includes('mailrouteBody'))
    problems.push('SMTP client writes a body held in memory in one call');
  return problems;
}

/** Throws when nodemailer lacks a patched behaviour the relay relies on. */
export function assertNodemailerPatched(): void {
  assertPatched('nodemailer', 'patches/nodemailer+10.6.1.patch', nodemailerPatchProblems());
}
