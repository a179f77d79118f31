// CPU of shaping one leg's SMTP envelope (docs/perf.md, "The envelope once per address"): nodemailer's
// MimeNode.setEnvelope, which the delivery path called per leg, against the relay's EnvelopeShaper, which remembers
// each address's shape. node bench/relay/envelope.bench.ts
import MimeNode from 'nodemailer/lib/mime-node';
import { EnvelopeShaper } from '../../relay/delivery/envelope.ts';

const N = 100_000;
const from = 'sender@example.com';
const to = ['user@bücher.example'];
const node = new MimeNode('message/rfc822', { baseBoundary: 'mailroute' });
const shaper = new EnvelopeShaper();

const perLeg = (fn: () => unknown): number => {
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / N;
};
for (let round = 1; round <= 3; round++) {
  const a = perLeg(() => node.setEnvelope({ from, to, size: 4096 }).getEnvelope());
  const b = perLeg(() => shaper.shape(from, to, 4096));
  console.log(
    `round ${round}: setEnvelope ${a.toFixed(2)} µs CPU/leg, EnvelopeShaper ${b.toFixed(3)} µs CPU/leg`,
  );
}
