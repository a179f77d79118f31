// What every routing source keeps (the snapshot in use, the problems of the last failed load, the change listeners)
// and the part of RoutingSource that only reads it. Each source brings its own start() and close().
import type { RoutingSnapshot, RoutingSource, SourceError } from './types.ts';

export class SourceState {
  current: RoutingSnapshot | undefined;
  lastError: SourceError | undefined;
  readonly listeners = new Set<(s: RoutingSnapshot) => void>();

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
