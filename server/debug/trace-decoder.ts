// The tracer's decoder thread: takes batches of captured records and gives back their decoded
// JSON lines, so decoding a busy SPMC's trace never holds up the calls themselves.

import { parentPort } from 'node:worker_threads';
import { decodeBatch, type RawBatch } from './records.js';

parentPort?.on('message', (batch: RawBatch) => {
  parentPort!.postMessage(decodeBatch(batch));
});
// Loaded: until it says so, the tracer decodes on its own thread (a live view must not wait for us).
parentPort?.postMessage('ready');
