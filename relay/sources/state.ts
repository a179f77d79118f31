// What every routing source keeps (the snapshot in use, the problems of the last failed load, the change listeners)
// and the part of RoutingSource that only reads it. Each source brings its own start() and close().
import type { Logger } from 'pino';
import type { RoutingSnapshot, RoutingSource, SourceError } from './types.ts';

export class SourceState {
  current: RoutingSnapshot | undefined;
  lastError: SourceError | undefined;
  readonly listeners = new Set<(s: RoutingSnapshot) => void>();

  /**
   * Makes `snapshot` the one in use and tells every listener. A listener that throws is logged and the others are
   * still told: the snapshot is in use either way, so no source may report it as failed.
   */
  publish(snapshot: RoutingSnapshot, log: Logger): void {
    this.current = snapshot;
    this.lastError = undefined;
    for (const l of this.listeners) {
      try {
        l(snapshot);
      } catch (err) {
        log.error({ err }, 'routing: change listener failed');
      }
    }
  }

  /** The RoutingSource of `kind` over this state: start() and close() are the source's own. */
  source(kind: string, start: () => Promise<void>, close: () => void): RoutingSource {
    return {
      kind,
      start,
      current: () => this.current,
      lastError: () => this.lastError,
      onChange: (listener) => {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
      },
      close: () => {
        close();
        return Promise.resolve();
      },
    };
  }
}
