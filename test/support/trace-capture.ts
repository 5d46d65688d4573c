/** Captures formatted trace lines of the enabled points while a test runs. */
import { trace } from '../../src/core/trace.js';
import '../../src/core/trace-events.js';

export interface TraceCapture {
  readonly lines: string[];
  /** Disables the points and stops capturing. */
  dispose(): void;
}

export function captureTrace(pattern: string): TraceCapture {
  trace.enable(pattern);
  const lines: string[] = [];
  const sub = trace.subscribe((r) => lines.push(trace.formatLine(r)));
  return {
    lines,
    dispose() {
      sub.dispose();
      trace.disable(pattern);
    },
  };
}
