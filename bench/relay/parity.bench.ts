// CPU of the parity counters per message (docs/perf.md, "The parity counters with many recipients"): a dual message
// of 1, 10, 100 and 1,000 recipients (--max-recipients' default) through relay/telemetry/parity.ts, every leg
// accepted and then settled as delivered, with the relay's real metrics. Before the pair of a delivered leg was
// looked up by recipient, it was searched for among all of the message's legs: quadratic in the recipients.
// node bench/relay/parity.bench.ts
import { Registry } from 'prom-client';
import { createRelayMetrics } from '../../relay/telemetry/metrics.ts';
import { createParityTracker } from '../../relay/telemetry/parity.ts';
import type { LegState } from '../../relay/spool/types.ts';
import { dualLegStates } from '../../test/support/engine-harness.ts';

for (let round = 1; round <= 3; round++) {
  const line: string[] = [];
  for (const recipients of [1, 10, 100, 1000]) {
    const legs = dualLegStates(recipients, 'default/example-com');
    const tracker = createParityTracker(createRelayMetrics(new Registry(), false));
    const messages = Math.max(5, Math.floor(40_000 / legs.length));
    const c0 = process.cpuUsage();
    for (let m = 0; m < messages; m++) {
      const id = `m${m}`;
      tracker.accepted(
        id,
        legs.map((l) => l.leg),
      );
      const at = new Date().toISOString();
      const done = legs.map((l): LegState => ({ ...l, state: 'delivered', lastAttemptAt: at }));
      for (let i = 0; i < done.length; i++) tracker.settled(id, i, done);
      tracker.forget(id);
    }
    const c = process.cpuUsage(c0);
    const perMessage = (c.user + c.system) / messages;
    line.push(
      `${recipients} rcpt ${perMessage.toFixed(1)} µs/msg (${(perMessage / legs.length).toFixed(2)} µs/leg)`,
    );
  }
  console.log(`round ${round}: ${line.join(', ')}`);
}
