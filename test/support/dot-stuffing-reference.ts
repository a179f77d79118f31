// The reference for the relay's DATA encoders (relay/delivery/smtp-out/data-encoder.test.ts, and the patched
// nodemailer encoder the benchmark's floor can still use, relay/delivery/dot-stuffing.test.ts): nodemailer 10.6.1's
// original per-byte algorithm, copied from smtp-connection/data-stream.js before any patch. A dot at a line start is
// doubled, a bare CR or LF made CRLF (a dot after a bare CR stuffed too), and the final dot line follows with a CRLF
// before it when the input does not end with one.
//
// Exports: dotStuffingReference(input): the bytes on the wire after DATA's 354, final dot line included.

/** The unpatched algorithm of nodemailer 10.6.1, byte by byte, over the whole input (then the final dot line). */
export function dotStuffingReference(input: Buffer): Buffer {
  const out: number[] = [];
  let prev: number | false = false;
  for (const byte of input) {
    if (prev === 0x0d && byte !== 0x0a) out.push(...(byte === 0x2e ? [0x0a, 0x2e] : [0x0a]));
    else if (byte === 0x0a && prev !== 0x0d) out.push(0x0d);
    else if (byte === 0x2e && (prev === 0x0a || prev === false)) out.push(0x2e);
    out.push(byte);
    prev = byte;
  }
  const end = prev === 0x0a ? '.\r\n' : prev === 0x0d ? '\n.\r\n' : '\r\n.\r\n';
  return Buffer.concat([Buffer.from(out), Buffer.from(end)]);
}
