import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge } from 'prom-client';
import { CaptureWriter, captureTap, DROP_REASONS, type FileOpener, openForAppend } from '../capture.js';

export interface CaptureOptions {
  /** Opens the capture file (tests pass one that fails); the real file system by default. */
  openFile?: FileOpener;
}

/**
 * Data capture (CAPTURE_DIR, CAPTURE_SAMPLE): a sampled share of predictions written as JSON Lines
 * (src/capture.ts). Nothing when capture is off. A directory that cannot be written does not stop
 * start-up: it is logged, and the records are dropped and counted until it can be written.
 */
export default fp(
  async function capture(app: FastifyInstance, options: CaptureOptions) {
    const settings = app.config.capture;
    if (settings === undefined) return;
    const registers = app.metrics === undefined ? [] : [app.metrics.registry];
    const dropped = new Counter({
      name: 'wattserve_capture_dropped_total',
      help: 'Captured predictions not written, by reason (buffer_full: the disk is slower than the records come; open_failed, write_failed, rotate_failed: the directory or disk failed; too_large: a record that could never fit in a file or in CAPTURE_BUFFER_BYTES; closed)',
      labelNames: ['reason'],
      registers,
    });
    // Every reason from 0, so a rate over a reason that never happened is 0, not absent.
    for (const reason of DROP_REASONS) dropped.labels(reason).inc(0);
    const records = new Counter({
      name: 'wattserve_capture_records_total',
      help: 'Captured predictions written to the capture files',
      registers,
    });
    const writer = new CaptureWriter({
      dir: settings.dir,
      maxFileBytes: settings.maxFileBytes,
      maxFiles: settings.maxFiles,
      bufferBytes: settings.bufferBytes,
      log: app.log,
      dropped: (reason, count) => dropped.labels(reason).inc(count),
      written: (count) => records.inc(count),
      openFile: options.openFile ?? openForAppend,
    });
    new Gauge({
      name: 'wattserve_capture_buffer_bytes',
      help: 'Bytes of captured predictions waiting to be written (at most CAPTURE_BUFFER_BYTES)',
      registers,
      collect() {
        this.set(writer.stats.waitingBytes);
      },
    });
    if (await writer.open()) {
      app.log.info({ dir: settings.dir, sample: settings.sample }, 'capturing predictions');
    }
    app.predictionTaps.push(captureTap(writer, settings.sample));
    app.addHook('onClose', async () => writer.close());
  },
  { name: 'capture', dependencies: ['prediction-taps', 'metrics', 'model-registry'] },
);
