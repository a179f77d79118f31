// vitest helpers for the real-node suites. The cluster is started once for the `node` project by
// test/node/global-setup.ts; a suite that cannot run says why loudly and is skipped, unless MAILROUTE_REQUIRE_NODE=1
// (CI), which turns the missing node into a failing test.
import { describe, it } from 'vitest';
import { HOW_TO_GET_NODE, nodeAvailability } from './harness.ts';

export function describeNode(name: string, fn: () => void): void {
  const availability = nodeAvailability();
  if (availability.available) {
    describe(name, fn);
    return;
  }
  if (process.env.MAILROUTE_REQUIRE_NODE === '1') {
    describe(name, () => {
      it('has a real node (MAILROUTE_REQUIRE_NODE=1)', () => {
        throw new Error(`MAILROUTE_REQUIRE_NODE=1 but ${availability.reason}. To get it: ${HOW_TO_GET_NODE}`);
      });
    });
    return;
  }
  console.warn(
    `\n${'!'.repeat(100)}\n!! SKIPPING real-node suite "${name}": ${availability.reason}\n` +
      `!! To run it: ${HOW_TO_GET_NODE}.\n!! Set MAILROUTE_REQUIRE_NODE=1 to make this a failure.\n${'!'.repeat(100)}\n`,
  );
  describe.skip(name, fn);
}
