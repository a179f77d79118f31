// CPU of the delivery client's DATA encoder per leg (docs/perf.md "The DATA encoder"), against the encoder the relay
// used before it (nodemailer's, as patched by patches/nodemailer+10.6.1.patch): node bench/relay/dot-stuffer.bench.ts
// Bodies of 4 KiB and 100 KiB in 78-byte CRLF lines (as smtp-source sends), without and with a dot line every 20
// lines (each one an insert).
import type { Transform } from 'node:stream';
import { stuffWhole } from '../../relay/delivery/smtp-out/data-encoder.ts';

const dataStreamUrl = new URL('./smtp-connection/data-stream.js', import.meta.resolve('nodemailer')).href;
const { default: DataStream } = (await import(dataStreamUrl)) as {
  default: (new () => Transform) & { encode?: (body: Buffer) => Buffer[] };
};
const encode = DataStream.encode;
if (encode === undefined) throw new Error('nodemailer is not patched (npm ci applies patches/)');

const body = (size: number, dots: boolean): Buffer => {
  const lines: string[] = [];
  for (let n = 0, i = 0; n < size; i++) {
    const line = dots && i % 20 === 19 ? '.'.padEnd(76, 'x') : 'La de da de da '.repeat(6).slice(0, 76);
    lines.push(line);
    n += 78;
  }
  return Buffer.from(lines.join('\r\n') + '\r\n');
};

/** CPU µs per call of f over n calls, after n / 10 calls of warm-up. */
const cpuPerCall = (f: () => void, n: number): number => {
  for (let i = 0; i < n / 10; i++) f();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
};

for (const [size, dots] of [
  [4096, false],
  [4096, true],
  [102400, false],
  [102400, true],
] as const) {
  const b = body(size, dots);
  const n = size > 10_000 ? 3_000 : 60_000;
  const mine = cpuPerCall(() => stuffWhole(b), n);
  const before = cpuPerCall(() => encode(b), n);
  console.log(
    `${String(b.length).padStart(6)} bytes${dots ? ', a dot line in 20' : ''}: ${mine.toFixed(1)} µs CPU per leg ` +
      `(nodemailer's patched encoder: ${before.toFixed(1)} µs)`,
  );
}
