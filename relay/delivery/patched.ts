// The relay depends on patches/nodemailer+10.6.1.patch (applied by patch-package in postinstall and in the
// Dockerfile), which changes nodemailer's SMTP DATA encoder (smtp-connection/data-stream.js) in two ways that keep its
// output bytes (relay/delivery/dot-stuffing.test.ts checks them against the original algorithm):
//   - it visits only the bytes that can need an insert (CR, LF, dot), found with indexOf, instead of every byte;
//   - it holds the last encoded chunk back and sends it together with the final dot line, one socket write per leg
//     fewer; a last chunk over 16 KiB goes on as it is and the dot line after it, since copying a large body (twice
//     per message, one per leg) cost more than the write it saved (docs/perf.md).
// Both are only about speed, but an install without them (--ignore-scripts and no patch-package step) would quietly
// spend several times the CPU on large mail, so the relay probes them at start and refuses to run without them, as it
// does for smtp-server (relay/inbound/patched.ts).
import type { Transform } from 'node:stream';
import { assertPatched } from '../patch-check.ts';

// The encoder nodemailer's pool uses: its ESM build, which nodemailer's package exports do not list on their own.
const dataStreamUrl = new URL('./smtp-connection/data-stream.js', import.meta.resolve('nodemailer')).href;
const { default: DataStream } = (await import(dataStreamUrl)) as { default: new () => Transform };

type Encoder = Transform & {
  _transform(chunk: Buffer, encoding: string, done: (err?: Error | null) => void): void;
  _flush(done: (err?: Error | null) => void): void;
};

/** The patched behaviours that are missing from this DATA encoder class (empty when it is patched). */
export function nodemailerPatchProblems(Encoder: new () => Transform = DataStream): string[] {
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
  return problems;
}

/** Throws when nodemailer lacks a patched behaviour the relay relies on. */
export function assertNodemailerPatched(): void {
  assertPatched('nodemailer', 'patches/nodemailer+10.6.1.patch', nodemailerPatchProblems());
}
