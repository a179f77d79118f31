import { defineConfig } from 'vitest/config';

// Unit tests sit next to the code; integration and end-to-end suites live under test/.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: [
            'routing/**/*.test.ts',
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
          include: ['test/**/*.test.ts'],
          exclude: ['test/reliability/**'],
          testTimeout: 120_000,
          setupFiles: ['test/support/dns-guard.ts'],
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'reliability',
          include: ['test/reliability/**/*.test.ts'],
          testTimeout: 300_000,
          setupFiles: ['test/support/dns-guard.ts'],
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
