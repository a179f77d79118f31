import { defineConfig } from 'vitest/config';

// Unit tests sit next to the code; integration and end-to-end suites live under test/.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          sequence: { groupOrder: 0 },
          include: [
            'routing/**/*.test.ts',
            'lib/**/*.test.ts',
            'contract/**/*.test.ts',
            'relay/**/*.test.ts',
            'operator/**/*.test.ts',
            'cli/**/*.test.ts',
            'bench/**/*.test.ts',
          ],
          testTimeout: 20_000,
          setupFiles: ['test/support/dns-guard.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          // one file at a time, after the unit tests (vitest runs groups from the lowest number up)
          sequence: { groupOrder: 1 },
          include: ['test/**/*.test.ts'],
          exclude: ['test/reliability/**', 'test/node/**'],
          testTimeout: 120_000,
          setupFiles: ['test/support/dns-guard.ts'],
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'reliability',
          sequence: { groupOrder: 1 },
          include: ['test/reliability/**/*.test.ts'],
          testTimeout: 300_000,
          setupFiles: ['test/support/dns-guard.ts'],
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          // The real single-node cluster (test/node/cluster.sh): it runs after the other projects (groupOrder), so
          // that its pods do not compete with the timing of the local suites, one file at a time.
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          globalSetup: ['test/node/global-setup.ts'],
          testTimeout: 600_000,
          hookTimeout: 600_000,
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
