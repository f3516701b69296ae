import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Model loading (onnxruntime, tfjs wasm) and the spawned-server tests take a few seconds.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default', './test/reporters/closing-line.ts'],
  },
});
